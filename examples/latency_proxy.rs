//! A TCP delay line on 127.0.0.1, for benchmarks of remote collections: every byte crossing it
//! arrives `--delay-ms` later, in each direction (a round trip gains twice that), as
//! `tc qdisc … netem delay` would add on a link. For kernels without netem (this project's CI
//! and VMs); bandwidth is not limited.
//!
//! One event loop on one thread (tokio), so that the proxy takes as little as it can of the
//! CPU it shares with the loader and the server: a thread per direction and connection cost
//! ~2 s of CPU per 900 MB in context switches.
//!
//! ```text
//! cargo run --release --example latency_proxy -- --listen 9001 --to 9000 --delay-ms 10
//! ```

use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

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

/// Copies `from` to `to`, each read delivered `delay` after it was read; reads already due
/// when the writer wakes go out in one write.
async fn delay_line(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        let mut out = Vec::new();
        'lines: while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if bytes.is_empty() {
                break;
            }
            out.clear();
            out.extend_from_slice(&bytes);
            while let Ok((due, more)) = rx.try_recv() {
                if due > Instant::now() {
                    // Not due yet: write what is, then wait for it.
                    if to.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    tokio::time::sleep_until(due).await;
                }
                if more.is_empty() {
                    if to.write_all(&out).await.is_err() {
                        return;
                    }
                    break 'lines;
                }
                out.extend_from_slice(&more);
            }
            if to.write_all(&out).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        let due = Instant::now() + delay;
        if tx.send((due, buf[..n].to_vec())).is_err() || n == 0 {
            break;
        }
    }
    let _ = writer.await;
}

async fn serve(client: TcpStream, to: u16, delay: Duration) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", to)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = tokio::spawn(delay_line(client_read, server_write, delay));
    delay_line(server_read, client_write, delay).await;
    let _ = up.await;
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let delay = Duration::from_millis(args.delay_ms);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", args.listen)).await?;
        eprintln!(
            "latency_proxy: 127.0.0.1:{} -> 127.0.0.1:{}, +{} ms each way",
            args.listen, args.to, args.delay_ms
        );
        loop {
            let (client, _) = listener.accept().await?;
            tokio::spawn(serve(client, args.to, delay));
        }
    })
}
