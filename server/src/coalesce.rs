//! Write coalescing for client connections: one socket write carries the responses of every
//! stream that finished at about the same time, instead of one write per response.
//!
//! h2 writes (and flushes) its frame buffer each time the connection task runs, and each finished
//! request wakes that task straight away (tokio runs a just-woken task next), so under load every
//! unary response cost its own `writev` — about half of the server's CPU on small reads. The
//! wrapper makes the first write after each flush wait for one trip through the scheduler: the
//! connection task wakes itself and yields, the other ready tasks (the request handlers of the
//! same and other connections) queue their responses meanwhile, and the retried write sends them
//! all. When nothing else is runnable the task is polled again at once, so an idle connection
//! pays one extra poll, never a timer; a write never waits more than one yield.
//!
//! It also reports non-vectored writes, which makes h2 copy DATA payloads under 1 KiB into its
//! frame buffer instead of chaining them: a chained payload forces a write before the next frame
//! can be buffered, which would cap a batch at one response.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// A connection whose writes are held back by one scheduler yield after each flush.
#[derive(Debug)]
pub struct Coalescing<T> {
    inner: T,
    /// The current batch has already yielded once; its writes go straight through.
    yielded: bool,
}

impl<T> Coalescing<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            yielded: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// True when this write is the first of a batch: it yields (after waking the task, so it is
    /// polled again) to let more output gather first.
    fn hold_back(&mut self, cx: &Context<'_>, len: usize) -> bool {
        if self.yielded || len == 0 {
            return false;
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        true
    }
}

impl<T: Connected> Connected for Coalescing<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalescing<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalescing<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.hold_back(cx, buf.len()) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if this.hold_back(cx, len) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Everything written so far is out: the next write starts a new batch.
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Records every write that reaches it.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn write(io: &mut Coalescing<Recorder>, cx: &mut Context<'_>, data: &[u8]) -> Poll<usize> {
        match Pin::new(io).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => Poll::Ready(n),
            Poll::Ready(Err(e)) => panic!("write failed: {e}"),
            Poll::Pending => Poll::Pending,
        }
    }

    #[test]
    fn the_first_write_of_each_batch_yields_once_and_wakes_the_task() {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = Coalescing::new(Recorder::default());

        assert!(write(&mut io, &mut cx, b"one").is_pending());
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "a held write must wake"
        );
        assert!(io.get_ref().writes.is_empty());
        // The retry, and everything else until the flush, goes straight through in order.
        assert_eq!(write(&mut io, &mut cx, b"one"), Poll::Ready(3));
        assert_eq!(write(&mut io, &mut cx, b"two"), Poll::Ready(3));
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.get_ref().writes, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(io.get_ref().flushes, 1);

        // After the flush a new batch starts, and yields again.
        assert!(write(&mut io, &mut cx, b"three").is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(write(&mut io, &mut cx, b"three"), Poll::Ready(5));
    }

    #[test]
    fn empty_writes_and_flushes_never_wait() {
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        let mut cx = Context::from_waker(&waker);
        let mut io = Coalescing::new(Recorder::default());
        assert_eq!(write(&mut io, &mut cx, b""), Poll::Ready(0));
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert!(Pin::new(&mut io).poll_shutdown(&mut cx).is_ready());
    }

    #[tokio::test]
    async fn a_lone_write_reaches_the_peer_without_more_traffic() -> io::Result<()> {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut io = Coalescing::new(client);
        io.write_all(b"ping").await?;
        io.flush().await?;
        let mut got = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(1), server.read_exact(&mut got))
            .await
            .map_err(|_| io::Error::other("the write did not arrive promptly"))??;
        assert_eq!(&got, b"ping");
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_batches_arrive_complete_and_in_order() -> io::Result<()> {
        // A pipe smaller than the output: some writes find it full and must wait for the reader.
        let (client, mut server) = tokio::io::duplex(64);
        let mut io = Coalescing::new(client);
        let writer = tokio::spawn(async move {
            for i in 0..200u32 {
                io.write_all(&i.to_be_bytes()).await?;
                if i % 7 == 0 {
                    io.flush().await?;
                }
            }
            io.shutdown().await
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await?;
        writer.await.map_err(io::Error::other)??;
        let want: Vec<u8> = (0..200u32).flat_map(|i| i.to_be_bytes()).collect();
        assert_eq!(got, want);
        Ok(())
    }
}
