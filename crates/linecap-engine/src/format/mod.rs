//! Payload formats: how a sequence number and a verifiable pattern are laid
//! into a datagram, and how to read them back. Pure code: bytes in, bytes out.

pub mod capfile;
pub mod craft;
pub mod l2l4;
pub mod raw;
pub mod seq;
pub mod spead;
pub mod vdif;
