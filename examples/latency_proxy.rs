//! A TCP delay line on 127.0.0.1, for benchmarks of remote collections: every byte crossing it
//! arrives `--delay-ms` later, in each direction (a round trip gains twice that), as
//! `tc qdisc … netem delay` would add on a link. For kernels without netem (this project's CI
//! and VMs); bandwidth is not limited.
//!
//! ```text
//! cargo run --release --example latency_proxy -- --listen 9001 --to 9000 --delay-ms 10
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    listen: u16,
    /// Port of the server behind (127.0.0.1).
    #[arg(long)]
    to: u16,
    /// One-way delay in milliseconds.
    #[arg(long, default_value_t = 10)]
    delay_ms: u64,
}

/// Copies `from` to `to`, each read delivered `delay` after it was read.
fn delay_line(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if bytes.is_empty() || to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        let due = Instant::now() + delay;
        if tx.send((due, buf[..n].to_vec())).is_err() || n == 0 {
            break;
        }
    }
    let _ = writer.join();
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let delay = Duration::from_millis(args.delay_ms);
    let listener = TcpListener::bind(("127.0.0.1", args.listen))?;
    eprintln!(
        "latency_proxy: 127.0.0.1:{} -> 127.0.0.1:{}, +{} ms each way",
        args.listen, args.to, args.delay_ms
    );
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let to = args.to;
        std::thread::spawn(move || {
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            let up = std::thread::spawn(move || delay_line(client_read, server, delay));
            delay_line(server_read, client, delay);
            let _ = up.join();
        });
    }
    Ok(())
}
