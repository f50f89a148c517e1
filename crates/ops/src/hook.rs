//! Middleware as hooks: code that runs before and after the inner service, applied as a tower
//! layer that boxes nothing on the way through.
//!
//! axum's `from_fn` is convenient but, for every request, boxes a clone of its inner service and
//! boxes its own future; with eight such layers that was a fifth of the instructions of a `/health`
//! request (docs/performance.md). A [`Hook`] is synchronous, so its service's future is just the
//! inner future plus what `before` handed over. A hook that must await after the response (to
//! read an error body, say) returns [`After::Later`] for those responses only, and only they pay
//! for a box.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Code around a request. Cheap to clone: [`HookService`] clones it for every request that
/// reaches `after`.
pub trait Hook: Clone + Send + Sync + 'static {
    /// What `before` hands to `after`.
    type Carry: Send + 'static;

    /// Runs before the inner service; `Err(response)` answers at once, without calling it.
    fn before(&self, request: &mut Request) -> Result<Self::Carry, Response>;

    /// Runs on the inner service's response.
    fn after(&self, carry: Self::Carry, response: Response) -> After;
}

/// What [`Hook::after`] made of the response.
#[allow(missing_debug_implementations)]
pub enum After {
    Done(Response),
    /// Work that must await, for the few responses that need it.
    Later(BoxFuture<'static, Response>),
}

/// Applies a [`Hook`] to every service it wraps.
#[derive(Debug, Clone)]
pub struct HookLayer<H>(H);

impl<H: Hook> HookLayer<H> {
    pub fn new(hook: H) -> Self {
        Self(hook)
    }
}

impl<H: Clone, S> Layer<S> for HookLayer<H> {
    type Service = HookService<H, S>;

    fn layer(&self, inner: S) -> Self::Service {
        HookService { hook: self.0.clone(), inner }
    }
}

/// The service [`HookLayer`] makes.
#[derive(Debug, Clone)]
pub struct HookService<H, S> {
    hook: H,
    inner: S,
}

impl<H, S> Service<Request> for HookService<H, S>
where
    H: Hook,
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = Infallible;
    type Future = HookFuture<H, H::Carry, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.hook.before(&mut request) {
            Ok(carry) => {
                HookFuture::Inner { future: self.inner.call(request), after: Some((self.hook.clone(), carry)) }
            }
            Err(response) => HookFuture::Answered { response: Some(response) },
        }
    }
}

pin_project! {
    /// The future of [`HookService`]: the inner future, then the hook's `after`.
    #[project = Projected]
    pub enum HookFuture<H, C, F> {
        Inner { #[pin] future: F, after: Option<(H, C)> },
        Later { future: BoxFuture<'static, Response> },
        Answered { response: Option<Response> },
    }
}

impl<H, F, R> Future for HookFuture<H, H::Carry, F>
where
    H: Hook,
    F: Future<Output = Result<R, Infallible>>,
    R: IntoResponse,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let later = match self.as_mut().project() {
                Projected::Inner { future, after } => {
                    // A no-op for `Response<Body>`; other body types are boxed, as `from_fn` would.
                    let Ok(response) = ready!(future.poll(cx)).map(IntoResponse::into_response);
                    let Some((hook, carry)) = after.take() else { return Poll::Ready(Ok(response)) };
                    match hook.after(carry, response) {
                        After::Done(response) => return Poll::Ready(Ok(response)),
                        After::Later(future) => future,
                    }
                }
                Projected::Later { future } => return future.as_mut().poll(cx).map(Ok),
                Projected::Answered { response } => {
                    return Poll::Ready(Ok(response.take().unwrap_or_else(completed_twice)));
                }
            };
            self.set(HookFuture::Later { future: later });
        }
    }
}

/// A future polled after it completed is a bug in the caller; answer with a 500 rather than panic.
fn completed_twice() -> Response {
    tracing::error!("a hook's future was polled after it completed");
    crate::Problem::internal().into_response()
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::StatusCode, routing::get};
    use tower::ServiceExt;

    use super::*;

    /// Refuses requests without `x-ok`, stamps `x-after` on the rest, and rewrites a 404 later.
    #[derive(Clone)]
    struct Probe;

    impl Hook for Probe {
        type Carry = String;

        fn before(&self, request: &mut Request) -> Result<String, Response> {
            match request.headers().get("x-ok") {
                Some(value) => Ok(value.to_str().unwrap_or_default().to_owned()),
                None => Err(Response::builder().status(StatusCode::FORBIDDEN).body(Body::empty()).unwrap_or_default()),
            }
        }

        fn after(&self, carry: String, mut response: Response) -> After {
            if response.status() == StatusCode::NOT_FOUND {
                return After::Later(Box::pin(async move {
                    tokio::task::yield_now().await;
                    Response::builder().status(StatusCode::GONE).body(Body::from(carry)).unwrap_or_default()
                }));
            }
            response.headers_mut().insert("x-after", carry.parse().unwrap_or(http::HeaderValue::from_static("?")));
            After::Done(response)
        }
    }

    async fn call(path: &str, ok: Option<&str>) -> Response {
        let router = Router::new().route("/", get(|| async { "hello" })).layer(HookLayer::new(Probe));
        let mut request = Request::builder().uri(path);
        if let Some(ok) = ok {
            request = request.header("x-ok", ok);
        }
        router.oneshot(request.body(Body::empty()).unwrap_or_default()).await.unwrap_or_else(|never| match never {})
    }

    #[tokio::test]
    async fn after_sees_what_before_carried() {
        let response = call("/", Some("carried")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-after"], "carried");
    }

    #[tokio::test]
    async fn before_can_answer_without_the_inner_service() {
        assert_eq!(call("/", None).await.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn after_can_finish_later() {
        let response = call("/missing", Some("later")).await;
        assert_eq!(response.status(), StatusCode::GONE);
        let body = axum::body::to_bytes(response.into_body(), 100).await.unwrap_or_default();
        assert_eq!(&body[..], b"later");
    }
}
