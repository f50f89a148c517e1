//! `/docs`: the API reference (Swagger UI, its assets built into the binary), reading the served
//! `/api/v1/openapi.json`. Its pages carry their own Content-Security-Policy, which the security
//! headers layer leaves in place: only this origin's scripts, styles, images (and the `data:`
//! icons Swagger UI's stylesheet uses) and requests. The rest of the API keeps its strict policy.

use axum::{
    Router,
    http::{HeaderValue, header},
    response::Response,
};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::AppState;

/// What the page needs, and nothing else (no inline script or style, no third party).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn router() -> Router<AppState> {
    // `validator_url("none")`: Swagger UI would otherwise send the document to validator.swagger.io.
    let config = Config::from("/api/v1/openapi.json").validator_url("none").try_it_out_enabled(true);
    Router::from(SwaggerUi::new("/docs").config(config)).layer(axum::middleware::map_response(csp))
}

async fn csp(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response
}
