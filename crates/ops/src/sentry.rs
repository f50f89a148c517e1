//! Error reporting to Sentry (feature `sentry`): panics and 5xx responses, tagged with the request's
//! ids, scrubbed of credentials and (unless `sentry.send_pii` is on) of client addresses before they
//! leave the process. Active only when `sentry.dsn` (or `SENTRY_DSN`) is set; otherwise no client,
//! no thread and no layer exist.
//!
//! Each application owns its client; [`Sentry::layer`] puts sentry-tower's layers around the routes,
//! binding a fresh hub (made from the application's) to every request, so tags never leak from one
//! request into another (or between servers sharing a process, as tests do).
//! [`Sentry::bind_to_process`] also makes it the process-wide client, for panics and errors outside
//! requests. Each request yields at most one event, the first and most specific: a panic (with
//! its stack trace), else the first error logged while serving it, else the 5xx response itself;
//! later errors of the same request become breadcrumbs of that event.

use std::{fmt, time::Duration};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::redact;

/// The `[sentry]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SentryConfig {
    /// The project DSN (`SENTRY_DSN`). Unset or empty: nothing is reported.
    #[serde(serialize_with = "redact::optional_secret")]
    pub dsn: Option<SecretString>,
    /// Share of error events sent, 0.0–1.0.
    pub sample_rate: f32,
    /// Bound on each delivery and on the flush at shutdown. Events are queued and sent from a
    /// background thread; when Sentry is slow or down they are dropped, never waited for.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Send personal data: the client-address headers (`X-Forwarded-For`, `Forwarded`, …) and the
    /// TCP peer address. Off by default; credentials, query strings, cookies and bodies are never
    /// sent either way.
    pub send_pii: bool,
}

impl Default for SentryConfig {
    fn default() -> Self {
        Self { dsn: None, sample_rate: 1.0, timeout: Duration::from_secs(2), send_pii: false }
    }
}

impl SentryConfig {
    fn dsn(&self) -> Option<&str> {
        use secrecy::ExposeSecret;
        self.dsn.as_ref().map(|dsn| dsn.expose_secret().trim()).filter(|dsn| !dsn.is_empty())
    }

    /// Whether a DSN is set, i.e. whether events will be reported.
    pub fn enabled(&self) -> bool {
        self.dsn().is_some()
    }

    /// Every problem with this section. Never quotes the DSN.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.sample_rate) {
            problems.push("sentry.sample_rate must be between 0.0 and 1.0".to_owned());
        }
        if self.timeout.is_zero() {
            problems.push("sentry.timeout must be greater than 0".to_owned());
        }
        if let Some(dsn) = self.dsn() {
            #[cfg(feature = "sentry")]
            if dsn.parse::<::sentry::types::Dsn>().is_err() {
                problems.push("sentry.dsn is not a valid DSN (expected https://PUBLIC_KEY@HOST/PROJECT_ID)".to_owned());
            }
            #[cfg(not(feature = "sentry"))]
            {
                let _ = dsn;
                problems
                    .push("sentry.dsn is set but this build has no Sentry support (cargo feature `sentry`)".to_owned());
            }
        }
        problems
    }
}

/// The Sentry client could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SentryError {
    #[error("sentry.dsn is not a valid DSN")]
    Dsn,
    #[error("cannot build the HTTP client for Sentry: {0}")]
    Client(String),
}

#[cfg(feature = "sentry")]
pub use enabled::Sentry;
#[cfg(feature = "sentry")]
pub(crate) use enabled::tracing_layers;

/// Without the `sentry` feature there is never a client; the type exists so callers need no
/// `cfg` of their own.
#[cfg(not(feature = "sentry"))]
#[derive(Clone)]
pub struct Sentry(std::convert::Infallible);

#[cfg(not(feature = "sentry"))]
impl Sentry {
    /// Always `None` in a build without Sentry ([`SentryConfig::problems`] reports a set DSN).
    pub fn from_config(
        _config: &SentryConfig,
        _service: &crate::subscriber::ServiceInfo,
    ) -> Result<Option<Self>, SentryError> {
        Ok(None)
    }

    pub fn bind_to_process(&self) {
        match self.0 {}
    }

    pub async fn close(self) {
        match self.0 {}
    }

    pub fn layer<S>(&self) -> ReportLayer<S> {
        match self.0 {}
    }
}

/// The reporting layers as one layer for the middleware stack: boxed, so that its type does not
/// depend on the build's features and an unconfigured Sentry costs a request nothing
/// (`Option::None` in the stack); a configured one pays one boxed call per request.
pub type ReportLayer<S> = tower::util::BoxCloneSyncServiceLayer<
    S,
    axum::extract::Request,
    axum::response::Response,
    std::convert::Infallible,
>;

impl fmt::Debug for Sentry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sentry").finish_non_exhaustive()
    }
}

#[cfg(feature = "sentry")]
mod enabled {
    use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

    use ::sentry::{
        ClientOptions, Hub, Level, TransportFactory, TransportOptions,
        integrations::{
            tower::{HubProvider, SentryHttpLayer, SentryLayer},
            tracing::{self as sentry_tracing, EventMapping},
        },
        protocol::Event,
        transports::ReqwestHttpTransportOptions,
    };
    use axum::{
        extract::{ConnectInfo, MatchedPath, Request},
        middleware::{Next, from_fn},
        response::Response,
    };
    use tower::{Service, ServiceBuilder, util::BoxCloneSyncServiceLayer};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::{
        Layer, Registry,
        filter::{LevelFilter, filter_fn},
        layer::Context,
        registry::LookupSpan,
    };

    use super::{SentryConfig, SentryError};
    use crate::{
        metrics::UNMATCHED,
        request_id::RequestId,
        subscriber::{BoxedLayer, REQUEST_SPAN, ServiceInfo},
    };

    /// Headers whose values are credentials. Never sent to Sentry, whatever else is configured.
    const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"];

    /// Headers that carry the client's address, set by proxies and CDNs. Personal data: sent only
    /// with `sentry.send_pii`. The SDK's own filter knows only the first two.
    const CLIENT_ADDRESS_HEADERS: &[&str] = &[
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "true-client-ip",
        "cf-connecting-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "fastly-client-ip",
        "x-original-forwarded-for",
        "x-envoy-external-address",
    ];

    /// Where Sentry's request data keeps the peer address (`env` of the request interface).
    const REMOTE_ADDR: &str = "REMOTE_ADDR";

    /// Request-span fields that become tags on the request's Sentry scope when recorded. The request
    /// id, method and route are tagged by [`report`] directly.
    const TAGGED_SPAN_FIELDS: &[&str] = &["tenant_id", "user_id"];

    fn is_listed(list: &[&str], name: &str) -> bool {
        list.iter().any(|listed| listed.eq_ignore_ascii_case(name))
    }

    /// An application's Sentry client. Cheap to clone.
    #[derive(Clone)]
    pub struct Sentry {
        hub: Arc<Hub>,
        timeout: Duration,
        send_pii: bool,
    }

    impl Sentry {
        /// The client for `config`, or `None` when no DSN is set.
        pub fn from_config(config: &SentryConfig, service: &ServiceInfo) -> Result<Option<Self>, SentryError> {
            let Some(dsn) = config.dsn() else {
                return Ok(None);
            };
            let dsn: ::sentry::types::Dsn = dsn.parse().map_err(|_| SentryError::Dsn)?;
            let http = reqwest::Client::builder()
                .connect_timeout(config.timeout)
                .timeout(config.timeout)
                .build()
                .map_err(|error| SentryError::Client(error.to_string()))?;
            let send_pii = config.send_pii;
            let mut options = ClientOptions::new()
                .release(service.release())
                .environment(service.environment.clone())
                // Out of range (NaN included) is refused by `problems()`; never panic over it here.
                .sample_rate(if (0.0..=1.0).contains(&config.sample_rate) { config.sample_rate } else { 1.0 })
                .send_default_pii(send_pii)
                .attach_stacktrace(true)
                .shutdown_timeout(config.timeout)
                .before_send(move |event| Some(scrub_event(event, send_pii)))
                .transport(Transport(http));
            options.dsn = Some(dsn);
            let client = ::sentry::Client::from(::sentry::apply_defaults(options));
            let hub = Arc::new(Hub::new(Some(Arc::new(client)), Default::default()));
            Ok(Some(Self { hub, timeout: config.timeout, send_pii }))
        }

        /// Makes this the client of the process hub too, so panics and errors outside any request
        /// are reported. Call it before serving: threads that touched Sentry earlier keep a hub
        /// without the client.
        pub fn bind_to_process(&self) {
            Hub::main().bind_client(self.hub.client());
        }

        /// Sends what is queued (within `sentry.timeout`) and stops the client.
        pub async fn close(self) {
            if let Some(client) = self.hub.client() {
                let timeout = self.timeout;
                let _ = tokio::task::spawn_blocking(move || client.close(Some(timeout))).await;
            }
        }

        /// The reporting layers, outermost first: sentry-tower's `SentryLayer` binds a fresh hub
        /// made from this application's to the request; `SentryHttpLayer` attaches the request
        /// (method, URL, headers) to its events; [`report`] tags the scope and reports a 5xx that
        /// nothing more specific reported.
        pub fn layer<S>(&self) -> super::ReportLayer<S>
        where
            S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
            S::Future: Send + 'static,
        {
            let http = if self.send_pii { SentryHttpLayer::new().enable_pii() } else { SentryHttpLayer::new() };
            let send_pii = self.send_pii;
            BoxCloneSyncServiceLayer::new(
                ServiceBuilder::new()
                    .layer(SentryLayer::new(HubPerRequest(self.hub.clone())))
                    .layer(http)
                    .layer(from_fn(move |request, next| report(send_pii, request, next))),
            )
        }
    }

    /// Each request's hub: a child of the application's, so scopes never leak between requests.
    #[derive(Clone)]
    struct HubPerRequest(Arc<Hub>);

    impl<R> HubProvider<Arc<Hub>, R> for HubPerRequest {
        fn hub(&self, _request: &R) -> Arc<Hub> {
            Arc::new(Hub::new_from_top(&self.0))
        }
    }

    /// Builds the reqwest transport around our own client, which carries the timeouts.
    struct Transport(reqwest::Client);

    impl TransportFactory for Transport {
        fn create_transport_with_options(&self, options: TransportOptions) -> Arc<dyn ::sentry::Transport> {
            Arc::new(ReqwestHttpTransportOptions::from(options).with_client(self.0.clone()).build())
        }
    }

    /// Middleware, inside the request's hub: tags the scope with the request id, method and route
    /// (the request span's tenant and user ids are added as they are recorded), and reports a 5xx
    /// response unless something more specific was reported while serving it. Sits outside the
    /// trace span and inside the request id; sees the final, normalized status.
    async fn report(send_pii: bool, request: Request, next: Next) -> Response {
        let method = request.method().to_string();
        let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
        let peer = send_pii.then(|| request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())).flatten();
        let hub = Hub::current();
        hub.configure_scope(|scope| {
            if let Some(id) = RequestId::from_extensions(request.extensions()) {
                scope.set_tag("request_id", id.as_str());
            }
            scope.set_tag("http.method", &method);
            scope.set_tag("http.route", &route);
            scope.set_transaction(Some(&format!("{method} {route}")));
            if let Some(peer) = peer {
                scope.add_event_processor(move |mut event| {
                    if let Some(request) = event.request.as_mut() {
                        request.env.insert(REMOTE_ADDR.to_owned(), peer.to_string());
                    }
                    Some(event)
                });
            }
        });
        let response = next.run(request).await;
        let status = response.status();
        if status.is_server_error() && hub.last_event_id().is_none() {
            hub.capture_event(Event {
                level: Level::Error,
                message: Some(format!("{method} {route} answered {status}")),
                logger: Some("palisade::http".to_owned()),
                ..Default::default()
            });
        }
        response
    }

    /// The last check before an event leaves the process, whatever put the request data there:
    /// no credentials, query strings, cookies or bodies ever; no client address (headers, peer
    /// address, user IP) unless `send_pii` is on.
    pub(super) fn scrub_event(mut event: Event<'static>, send_pii: bool) -> Event<'static> {
        if let Some(request) = event.request.as_mut() {
            if let Some(url) = request.url.as_mut() {
                url.set_query(None);
                url.set_fragment(None);
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            request.query_string = None;
            request.cookies = None;
            request.data = None;
            request.headers.retain(|name, _| {
                !is_listed(SECRET_HEADERS, name) && (send_pii || !is_listed(CLIENT_ADDRESS_HEADERS, name))
            });
            if !send_pii {
                request.env.remove(REMOTE_ADDR);
            }
        }
        if !send_pii && let Some(user) = event.user.as_mut() {
            user.ip_address = None;
        }
        event
    }

    /// The layers feeding Sentry from `tracing`: log lines become breadcrumbs and error events
    /// (see [`map_event`]), and the request span's tenant and user ids become tags. Sentry's own
    /// span-to-transaction mapping is off: traces go to OpenTelemetry.
    pub(crate) fn tracing_layers() -> Vec<BoxedLayer> {
        let events = sentry_tracing::layer::<Registry>()
            .span_filter(|_| false)
            .event_mapper(map_event)
            .with_filter(LevelFilter::INFO)
            .boxed();
        let tags = RequestTags
            .with_filter(filter_fn(|metadata| metadata.is_span() && metadata.name() == REQUEST_SPAN))
            .boxed();
        vec![events, tags]
    }

    /// INFO and WARN lines become breadcrumbs. An ERROR line inside a request becomes the request's
    /// event when it is the first one (its stack trace is the log site's), else a breadcrumb; one
    /// outside any request is reported on the process hub.
    fn map_event(event: &tracing::Event<'_>, ctx: Context<'_, Registry>) -> EventMapping {
        let in_request =
            ctx.event_scope(event).is_some_and(|mut spans| spans.any(|span| span.metadata().name() == REQUEST_SPAN));
        let is_error = *event.metadata().level() == tracing::Level::ERROR;
        if in_request {
            if is_error && Hub::current().last_event_id().is_none() {
                return EventMapping::Event(Box::new(sentry_tracing::event_from_event(
                    event,
                    None::<&Context<'_, Registry>>,
                )));
            }
            return EventMapping::Breadcrumb(sentry_tracing::breadcrumb_from_event(
                event,
                None::<&Context<'_, Registry>>,
            ));
        }
        // Outside requests the process hub, not this thread's: a worker thread's hub is a copy made
        // the first time the thread touched Sentry, possibly before the client was bound.
        let hub = Hub::main();
        if hub.client().is_some() {
            if is_error {
                hub.capture_event(sentry_tracing::event_from_event(event, None::<&Context<'_, Registry>>));
            } else {
                hub.add_breadcrumb(sentry_tracing::breadcrumb_from_event(event, None::<&Context<'_, Registry>>));
            }
        }
        EventMapping::Ignore
    }

    /// Copies the request span's tenant and user ids, as the extractors record them, onto the
    /// request's Sentry scope (the hub [`report`] bound), so a panic or 5xx event carries them.
    struct RequestTags;

    impl<S> Layer<S> for RequestTags
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
            attrs.record(&mut TagVisitor);
        }

        fn on_record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>, _: Context<'_, S>) {
            values.record(&mut TagVisitor);
        }
    }

    struct TagVisitor;

    impl TagVisitor {
        fn tag(field: &Field, value: &str) {
            if value.is_empty() || !TAGGED_SPAN_FIELDS.contains(&field.name()) {
                return;
            }
            Hub::with_active(|hub| hub.configure_scope(|scope| scope.set_tag(field.name(), value)));
        }
    }

    impl Visit for TagVisitor {
        fn record_str(&mut self, field: &Field, value: &str) {
            Self::tag(field, value);
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if TAGGED_SPAN_FIELDS.contains(&field.name()) {
                Self::tag(field, &format!("{value:?}"));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use ::sentry::protocol;

        use super::*;

        fn request_event(headers: &[(&str, &str)]) -> Event<'static> {
            let mut env = std::collections::BTreeMap::new();
            env.insert(REMOTE_ADDR.to_owned(), "198.51.100.7".to_owned());
            Event {
                request: Some(protocol::Request {
                    url: "http://u:p@host/path?token=x#f".parse().ok(),
                    query_string: Some("token=x".to_owned()),
                    cookies: Some("s=1".to_owned()),
                    headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
                    env: env.into_iter().collect(),
                    ..Default::default()
                }),
                user: Some(protocol::User { ip_address: "198.51.100.7".parse().ok(), ..Default::default() }),
                ..Default::default()
            }
        }

        #[test]
        fn credentials_and_query_strings_are_scrubbed_from_request_data() {
            let headers = [("Authorization", "Bearer t0k3n"), ("cookie", "s=1"), ("X-Api-Key", "k"), ("accept", "*/*")];
            for send_pii in [false, true] {
                let request = scrub_event(request_event(&headers), send_pii).request.unwrap_or_default();
                assert_eq!(request.url.map(|u| u.to_string()).as_deref(), Some("http://host/path"));
                assert_eq!(request.query_string, None);
                assert_eq!(request.cookies, None);
                assert_eq!(request.headers.keys().collect::<Vec<_>>(), ["accept"], "send_pii={send_pii}");
            }
        }

        #[test]
        fn client_addresses_are_scrubbed_unless_pii_is_allowed() {
            let headers: Vec<(&str, &str)> =
                CLIENT_ADDRESS_HEADERS.iter().map(|name| (*name, "203.0.113.9")).chain([("accept", "*/*")]).collect();
            let scrubbed = scrub_event(request_event(&headers), false);
            let request = scrubbed.request.clone().unwrap_or_default();
            assert_eq!(request.headers.keys().collect::<Vec<_>>(), ["accept"]);
            assert!(request.env.is_empty(), "{:?}", request.env);
            assert_eq!(scrubbed.user.and_then(|u| u.ip_address), None);

            let kept = scrub_event(request_event(&headers), true);
            let request = kept.request.clone().unwrap_or_default();
            assert_eq!(request.headers.len(), CLIENT_ADDRESS_HEADERS.len() + 1);
            assert_eq!(request.env.get(REMOTE_ADDR).map(String::as_str), Some("198.51.100.7"));
            assert!(kept.user.and_then(|u| u.ip_address).is_some());
        }
    }
}
