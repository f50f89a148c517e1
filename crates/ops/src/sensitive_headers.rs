//! Marks the headers that carry credentials as sensitive (`HeaderValue::set_sensitive`), on the
//! request and on the response, so that whatever prints headers shows `Sensitive` instead of the
//! value.
//!
//! tower-http's `SetSensitiveHeadersLayer` does the same with `HeaderMap::entry`, which reserves
//! room for an insert (growing the map when it is full) for every name, whether or not the header
//! is there, in two layers with a future each: about 2,000 instructions of a `/health`
//! (docs/performance.md). This hook looks a name up first and only touches headers present, and
//! costs about half that.

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderName, header::Entry},
    response::Response,
};

use crate::hook::{After, Hook};

/// Middleware (a [`Hook`]): marks `names` sensitive on every request and response.
#[derive(Debug, Clone, Copy)]
pub struct SensitiveHeaders(pub &'static [HeaderName]);

impl SensitiveHeaders {
    fn mark(self, headers: &mut HeaderMap) {
        for name in self.0 {
            if !headers.contains_key(name) {
                continue;
            }
            if let Entry::Occupied(mut entry) = headers.entry(name) {
                for value in entry.iter_mut() {
                    value.set_sensitive(true);
                }
            }
        }
    }
}

impl Hook for SensitiveHeaders {
    type Carry = ();

    fn before(&self, request: &mut Request) -> Result<(), Response> {
        self.mark(request.headers_mut());
        Ok(())
    }

    fn after(&self, (): (), mut response: Response) -> After {
        self.mark(response.headers_mut());
        After::Done(response)
    }
}

#[cfg(test)]
mod tests {
    use axum::{
        body::Body,
        http::{HeaderValue, header},
    };

    use super::*;

    static NAMES: [HeaderName; 2] = [header::AUTHORIZATION, header::SET_COOKIE];

    fn sensitive(headers: &HeaderMap, name: &HeaderName) -> Vec<bool> {
        headers.get_all(name).iter().map(HeaderValue::is_sensitive).collect()
    }

    #[test]
    fn every_value_of_a_named_header_is_marked_on_the_request_and_the_response_and_nothing_else() {
        let hook = SensitiveHeaders(&NAMES);
        let mut request = Request::builder()
            .header(header::AUTHORIZATION, "Bearer secret")
            .header(header::ACCEPT, "application/json")
            .body(Body::empty())
            .unwrap_or_default();
        assert!(hook.before(&mut request).is_ok());
        assert_eq!(sensitive(request.headers(), &header::AUTHORIZATION), [true]);
        assert_eq!(sensitive(request.headers(), &header::ACCEPT), [false]);
        assert_eq!(request.headers().len(), 2, "nothing added");
        assert!(format!("{:?}", request.headers()).contains("Sensitive"));

        let mut response = Response::new(Body::empty());
        response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        let After::Done(response) = hook.after((), response) else { panic!("the hook answers at once") };
        assert_eq!(sensitive(response.headers(), &header::SET_COOKIE), [true, true]);
        assert!(!response.headers().contains_key(header::AUTHORIZATION), "nothing added");
    }
}
