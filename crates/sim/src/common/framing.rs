//! Length-prefixed frames over TCP: a 4-byte big-endian length, then that many bytes of UTF-8 (XML).
//! Plus [`serve_framed`], a framed server with the same handle, counters and shutdown as the HTTP one.

use super::server::{RequestContext, SimHandle};
use super::stats::Stats;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest frame accepted (16 MiB); longer length prefixes are refused as invalid data.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Read one frame. `Ok(None)` on a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<String>> {
    let mut len = [0u8; 4];
    if r.read(&mut len[..1]).await? == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[1..]).await?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {n} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await?;
    String::from_utf8(buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Write one frame and flush. The length and the text go out in one write: two small writes on a socket
/// with Nagle's algorithm wait for the peer's delayed acknowledgement.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> io::Result<()> {
    let n = u32::try_from(text.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
    let mut frame = Vec::with_capacity(4 + text.len());
    frame.extend_from_slice(&n.to_be_bytes());
    frame.extend_from_slice(text.as_bytes());
    w.write_all(&frame).await?;
    w.flush().await
}

/// What a framed handler does with one request frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameReply {
    /// Send this frame and wait for the next request.
    Reply(String),
    /// Close the connection without replying (e.g. an injected drop).
    Close,
}

/// A framed-protocol dialect: one request frame in, one reply out; one request in flight per connection.
pub trait FrameHandler: Send + Sync + 'static {
    /// Answer one frame.
    fn handle(&self, frame: String, cx: RequestContext) -> impl Future<Output = FrameReply> + Send;

    /// The name a call is counted under (default `frame`; dialects name the function).
    fn route(&self, frame: &str) -> String {
        let _ = frame;
        "frame".to_string()
    }
}

/// Serve a framed protocol on `listener`. The handle's base URL is `tcp://IP:PORT`.
pub fn serve_framed<H: FrameHandler>(listener: TcpListener, handler: H) -> SimHandle {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let stats = Arc::new(Stats::default());
    let handler = Arc::new(handler);
    let (stop, mut stopped) = watch::channel(false);
    let conn_stats = stats.clone();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut stream, _)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    // One frame a write, answered at once: no waiting to coalesce small segments.
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    let stats = conn_stats.clone();
                    let mut stop = stopped.clone();
                    connections.spawn(async move {
                        loop {
                            let frame = tokio::select! {
                                f = read_frame(&mut stream) => f,
                                _ = stop.changed() => break,
                            };
                            let Ok(Some(frame)) = frame else { break };
                            let route: Arc<str> = handler.route(&frame).into();
                            stats.record_call(&route);
                            let cx = RequestContext::for_frame(stats.clone(), route);
                            match handler.handle(frame, cx).await {
                                FrameReply::Reply(text) => {
                                    if write_frame(&mut stream, &text).await.is_err() {
                                        break;
                                    }
                                }
                                FrameReply::Close => break,
                            }
                        }
                    });
                }
                _ = stopped.changed() => break,
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
    });
    SimHandle::new(addr, "tcp", stats, stop, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, "<Hello a=\"1\"/>").await.expect("write");
        write_frame(&mut a, "").await.expect("write empty");
        drop(a);
        assert_eq!(
            read_frame(&mut b).await.expect("read").as_deref(),
            Some("<Hello a=\"1\"/>")
        );
        assert_eq!(read_frame(&mut b).await.expect("read").as_deref(), Some(""));
        assert_eq!(read_frame(&mut b).await.expect("eof"), None);

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes()).await.expect("write");
        let err = read_frame(&mut b).await.expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
