//! Sources: where batches come from. Each backend opens its kernel
//! interface, then hands out [`Batch`](crate::packet::Batch)es that borrow
//! its buffers until the sinks are done with them.

pub mod socket;
