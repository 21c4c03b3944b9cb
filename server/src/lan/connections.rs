//! The host's open LAN connections by device, so that revoking a device
//! closes its connections at once, WebSockets included.
//!
//! Each TLS connection from a device is wrapped in a [`Revocable`] stream
//! registered under the device's ID. [`Connections::revoke`] cancels them:
//! the next read or write of each fails (a read waiting for data wakes up
//! at once), so hyper ends the HTTP connection and a WebSocket's task ends
//! its socket; the TCP connection closes when the stream is dropped. The
//! wrapper stays under the HTTP connection and under an upgraded WebSocket
//! alike (the upgrade hands on the same stream), which a token checked per
//! request would not reach.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::device_id::DeviceId;

/// Open connections by device.
#[derive(Debug, Default)]
pub struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<DeviceId, HashMap<u64, CancellationToken>>>,
}

impl Connections {
    /// Registers a connection of `device`; it is forgotten when the
    /// returned stream is dropped.
    pub fn track<S>(self: &Arc<Self>, device: DeviceId, stream: S) -> Revocable<S> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.open
            .lock()
            .entry(device)
            .or_default()
            .insert(id, token.clone());
        Revocable {
            inner: stream,
            revoked: Box::pin(token.cancelled_owned()),
            registration: Some(Registration {
                connections: Arc::clone(self),
                device,
                id,
            }),
        }
    }

    /// Closes every open connection of `device`; returns how many.
    pub fn revoke(&self, device: &DeviceId) -> usize {
        let tokens = self.open.lock().remove(device).unwrap_or_default();
        for token in tokens.values() {
            token.cancel();
        }
        tokens.len()
    }

    /// How many connections `device` has open.
    pub fn count(&self, device: &DeviceId) -> usize {
        self.open.lock().get(device).map_or(0, HashMap::len)
    }

    fn forget(&self, device: &DeviceId, id: u64) {
        let mut open = self.open.lock();
        if let Some(of_device) = open.get_mut(device) {
            of_device.remove(&id);
            if of_device.is_empty() {
                open.remove(device);
            }
        }
    }
}

#[derive(Debug)]
struct Registration {
    connections: Arc<Connections>,
    device: DeviceId,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.forget(&self.device, self.id);
    }
}

/// A stream that fails every read and write once its device is revoked.
/// A plain pass-through for connections without a device (browsers).
pub struct Revocable<S> {
    inner: S,
    revoked: Pin<Box<WaitForCancellationFutureOwned>>,
    registration: Option<Registration>,
}

impl<S> Revocable<S> {
    /// A connection no revocation can reach (no device certificate).
    pub fn untracked(stream: S) -> Revocable<S> {
        let token = CancellationToken::new();
        Revocable {
            inner: stream,
            revoked: Box::pin(token.cancelled_owned()),
            registration: None,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.registration.is_some() && self.revoked.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the device was revoked",
            ));
        }
        Ok(())
    }
}

impl<S> std::fmt::Debug for Revocable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocable")
            .field("registration", &self.registration)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Revocable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(error) = this.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Revocable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(error) = this.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(error) = this.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn revoking_wakes_a_waiting_read_and_forgets_the_connection() {
        let connections = Arc::new(Connections::default());
        let device = DeviceId::from_bytes([7; 32]);
        let other = DeviceId::from_bytes([8; 32]);
        let (near, mut far) = tokio::io::duplex(64);
        let (other_near, _other_far) = tokio::io::duplex(64);
        let mut stream = connections.track(device, near);
        let _kept = connections.track(other, other_near);
        assert_eq!(connections.count(&device), 1);
        far.write_all(b"hi").await.expect("write");
        let mut buffer = [0u8; 2];
        stream.read_exact(&mut buffer).await.expect("read");
        let reader = tokio::spawn(async move {
            let mut buffer = [0u8; 1];
            let result = stream.read(&mut buffer).await;
            (result.map_err(|e| e.kind()), stream)
        });
        tokio::task::yield_now().await;
        assert_eq!(connections.revoke(&device), 1);
        let (result, stream) = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(result, Err(io::ErrorKind::ConnectionAborted));
        drop(stream);
        assert_eq!(connections.count(&device), 0);
        assert_eq!(connections.count(&other), 1);
        assert_eq!(connections.revoke(&device), 0);
    }

    #[tokio::test]
    async fn dropping_a_stream_forgets_it_and_untracked_streams_pass_through() {
        let connections = Arc::new(Connections::default());
        let device = DeviceId::from_bytes([7; 32]);
        let (near, _far) = tokio::io::duplex(64);
        let stream = connections.track(device, near);
        assert_eq!(connections.count(&device), 1);
        drop(stream);
        assert_eq!(connections.count(&device), 0);
        let (near, mut far) = tokio::io::duplex(64);
        let mut plain = Revocable::untracked(near);
        plain.write_all(b"ok").await.expect("write");
        let mut buffer = [0u8; 2];
        far.read_exact(&mut buffer).await.expect("read");
        assert_eq!(&buffer, b"ok");
    }
}
