pub mod errors;
pub mod pull_client_manager;
