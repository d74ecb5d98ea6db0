//! A byte-rate limit on what a connection may send us: a token bucket in front of the
//! socket's reads. Reading slower than a flooding peer writes leaves the excess in its
//! TCP buffers, so one peer's flood costs the others nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub(crate) struct RateLimited<IO> {
    io: IO,
    bytes_per_sec: f64,
    burst: f64,
    /// Bytes that may be read now; negative after a read that overdrew the bucket.
    tokens: f64,
    refilled: Instant,
    /// Pending while the bucket refills.
    wait: Option<Pin<Box<Sleep>>>,
}

impl<IO> RateLimited<IO> {
    /// `bytes_per_sec` sustained, with bursts of up to `burst` bytes.
    pub(crate) fn new(io: IO, bytes_per_sec: u64, burst: u64) -> Self {
        let burst = burst as f64;
        RateLimited { io, bytes_per_sec: bytes_per_sec as f64, burst, tokens: burst, refilled: Instant::now(), wait: None }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.bytes_per_sec;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.refilled = now;
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for RateLimited<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(wait) = &mut this.wait {
                ready!(wait.as_mut().poll(cx));
                this.wait = None;
            }
            this.refill();
            if this.tokens > 0.0 {
                break;
            }
            let missing = Duration::from_secs_f64((1.0 - this.tokens) / this.bytes_per_sec);
            this.wait = Some(Box::pin(tokio::time::sleep(missing)));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.tokens -= (buf.filled().len() - before) as f64;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for RateLimited<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_no_faster_than_the_rate_after_the_burst() {
        let (mut writer, reader) = tokio::io::duplex(1 << 20);
        writer.write_all(&vec![b'x'; 60_000]).await.unwrap();
        drop(writer);
        let mut limited = RateLimited::new(reader, 10_000, 10_000);
        let start = Instant::now();
        let mut all = Vec::new();
        limited.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 60_000);
        // 10 000 bytes at once, then 50 000 at 10 000 per second.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(4900) && took < Duration::from_secs(7), "{took:?}");
    }
}
