//! A bare retina receiver for `scripts/bench-cameras`: N RTSP sessions over TCP that only
//! count video frames, on the same runtime shape as the daemon (two worker threads): the
//! floor for anything built on retina.
//!
//!     retina-count URL N

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::StreamExt;
use retina::client::{
    PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport,
};
use retina::codec::CodecItem;

async fn count(url: url::Url, frames: Arc<AtomicU64>) -> anyhow::Result<()> {
    let mut session = Session::describe(url, SessionOptions::default()).await?;
    let video = session
        .streams()
        .iter()
        .position(|s| s.media() == "video")
        .ok_or_else(|| anyhow!("no video stream"))?;
    session
        .setup(
            video,
            SetupOptions::default().transport(Transport::Tcp(TcpTransportOptions::default())),
        )
        .await?;
    let mut stream = session.play(PlayOptions::default()).await?.demuxed()?;
    while let Some(item) = stream.next().await {
        if let CodecItem::VideoFrame(_) = item? {
            frames.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url: url::Url = args.next().context("usage: retina-count URL N")?.parse()?;
    let n: usize = args.next().context("usage: retina-count URL N")?.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let frames = Arc::new(AtomicU64::new(0));
        let mut sessions = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (url, frames) = (url.clone(), Arc::clone(&frames));
            sessions.spawn(async move {
                if let Err(e) = count(url, frames).await {
                    eprintln!("retina-count: {e:#}");
                }
            });
        }
        // Runs until killed; prints the frame count every second.
        while !sessions.is_empty() {
            tokio::select! {
                _ = sessions.join_next() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    println!("{}", frames.load(Ordering::Relaxed));
                }
            }
        }
    });
    Ok(())
}
