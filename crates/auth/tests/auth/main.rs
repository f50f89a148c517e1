//! Behaviour of palisade-auth against a real (in-process) OpenID Connect provider, real Redis
//! (when `PALISADE_TEST_REDIS_URL` is set) and a real HTTP server for the extractor.

mod api_keys;
mod attacks;
mod dev;
mod extractor;
mod oidc;
mod revocation;
mod support;
