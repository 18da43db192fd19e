pub mod client_session;
pub mod define;
pub mod errors;
pub mod gop_cache;
pub mod server_session;
