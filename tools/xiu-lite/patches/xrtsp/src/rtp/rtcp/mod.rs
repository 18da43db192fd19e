pub mod errors;
pub mod rtcp_app;
pub mod rtcp_bye;
pub mod rtcp_context;
pub mod rtcp_header;
pub mod rtcp_rr;
pub mod rtcp_sr;

pub const RTCP_SR: u8 = 200;
pub const RTCP_RR: u8 = 201;
pub const RTCP_SDES: u8 = 202;
pub const RTCP_BYE: u8 = 203;
pub const RTCP_APP: u8 = 204;
