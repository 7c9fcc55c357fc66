//! `linecap testbed`: the two-namespace veth testbed.

use super::*;

#[derive(Args)]
pub(crate) struct TestbedArgs {
    #[command(subcommand)]
    action: TestbedAction,
    /// Testbed name (namespaces NAME-tx and NAME-rx).
    #[arg(long, default_value = "linecap", global = true)]
    name: String,
    /// Where receive-side kernel work runs (`sender` is unrealistic, for comparison only).
    #[arg(long, value_enum, default_value = "napi", global = true)]
    placement: Placement,
    /// Queues of each veth end (veth receives an XDP frame on the queue of the sending CPU).
    #[arg(long, default_value_t = 1, global = true)]
    queues: u32,
}

#[derive(Subcommand, Clone, Copy)]
pub(crate) enum TestbedAction {
    /// Create it.
    Up,
    /// Remove it.
    Down,
    /// Describe it.
    Status,
}

pub(crate) fn cmd_testbed(a: TestbedArgs) -> anyhow::Result<ExitCode> {
    match a.action {
        TestbedAction::Up => {
            let mut o = TestbedOptions::new(&a.name);
            o.placement = a.placement;
            if !(1..=64).contains(&a.queues) {
                strict::usage!("--queues must be 1 to 64");
            }
            o.queues = a.queues;
            let tb = Testbed::up(&o)?.persist();
            println!("{}", tb.describe());
        }
        TestbedAction::Down => {
            testbed::require_root("removing the testbed")?;
            Testbed::attach(&a.name)?.down()?;
            println!("testbed {} removed", a.name);
        }
        TestbedAction::Status => {
            let tb = Testbed::attach(&a.name)?;
            println!("{}", tb.describe());
            if let (Ok(t), Ok(r)) = (tb.tx_iface(), tb.rx_iface()) {
                println!(
                    "  {}: tx {} packets, tx_dropped {}; {}: rx {} packets, rx_dropped {}",
                    tb.if_tx, t.tx_packets, t.tx_dropped, tb.if_rx, r.rx_packets, r.rx_dropped
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
