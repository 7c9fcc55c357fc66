//! The places a packet can be lost, each counted by its own counter. The
//! books are keyed by place; the names are how reports spell them.

use std::fmt;

/// Where packets were dropped. A report's `drops` map is keyed by this
/// type; its JSON spells each place as [`DropPlace::name`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPlace {
    /// The UDP socket's queue was full (`SO_MEMINFO`'s drops; a dropped
    /// GRO super-packet counts once).
    SocketOverflow,
    /// The same count where a socket filter ran: the kernel counts the
    /// datagrams the filter excluded with the overflows.
    SocketOverflowOrFiltered,
    /// The AF_XDP socket's rx ring was full.
    XskRxRingFull,
    /// The AF_XDP socket had no fill-ring frame to put a packet in.
    XskNoFillFrame,
    /// AF_XDP drops its statistics name no other way (invalid descriptors).
    XskInvalidDescs,
    /// The AF_PACKET ring had no free block (`tp_drops`).
    PacketRingDropped,
    /// Records of a file read back that could not be used.
    FileRecordsSkipped,
    /// The pcap writer's queue was full.
    PcapRingFull,
    /// The pcap writer could not write (e.g. a full disk).
    PcapWriteError,
    /// In a bench peer's ring, unread when it stopped.
    UnreadAtExit,
    /// The receiving veth's ring was full (veth counts it on the sending end).
    VethTxDropped,
    /// Dropped by the receiving interface.
    RxIfaceDropped,
}

impl DropPlace {
    /// Every place, in the order reports list them.
    pub const ALL: [DropPlace; 12] = [
        DropPlace::SocketOverflow,
        DropPlace::SocketOverflowOrFiltered,
        DropPlace::XskRxRingFull,
        DropPlace::XskNoFillFrame,
        DropPlace::XskInvalidDescs,
        DropPlace::PacketRingDropped,
        DropPlace::FileRecordsSkipped,
        DropPlace::PcapRingFull,
        DropPlace::PcapWriteError,
        DropPlace::UnreadAtExit,
        DropPlace::VethTxDropped,
        DropPlace::RxIfaceDropped,
    ];

    /// How reports and the books print it.
    pub fn name(self) -> &'static str {
        match self {
            DropPlace::SocketOverflow => "socket_overflow",
            DropPlace::SocketOverflowOrFiltered => "socket_overflow_or_filtered",
            DropPlace::XskRxRingFull => "xsk_rx_ring_full",
            DropPlace::XskNoFillFrame => "xsk_no_fill_frame",
            DropPlace::XskInvalidDescs => "xsk_invalid_descs",
            DropPlace::PacketRingDropped => "packet_ring_dropped",
            DropPlace::FileRecordsSkipped => "file_records_skipped",
            DropPlace::PcapRingFull => "pcap_ring_full",
            DropPlace::PcapWriteError => "pcap_write_error",
            DropPlace::UnreadAtExit => "unread_at_exit",
            DropPlace::VethTxDropped => "veth_tx_dropped",
            DropPlace::RxIfaceDropped => "rx_iface_dropped",
        }
    }

    /// At the pcap writer, after the packet was received (a verifier
    /// beside the writer still saw it).
    pub fn at_writer(self) -> bool {
        matches!(self, DropPlace::PcapRingFull | DropPlace::PcapWriteError)
    }

    /// At an AF_XDP socket (veth counts these as its own rx drops too).
    pub fn at_xsk(self) -> bool {
        matches!(self, DropPlace::XskRxRingFull | DropPlace::XskNoFillFrame | DropPlace::XskInvalidDescs)
    }
}

impl fmt::Display for DropPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_spell_each_place_as_the_books_print_it() {
        for p in DropPlace::ALL {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<DropPlace>(&format!("\"{p}\"")).unwrap(), p);
        }
    }
}
