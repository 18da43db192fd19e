pub mod client_session;
pub mod define;
pub mod errors;
pub mod server_session;
