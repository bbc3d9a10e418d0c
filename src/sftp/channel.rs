//! Connects an SSH channel to the SFTP protocol loop.
//!
//! A pump task drains the channel's incoming data into a pipe the SFTP loop
//! reads, independently of the loop's reply writes. Without it, a loop that
//! waits for send window (large downloads) stops reading, russh's bounded
//! channel queue fills, and the session never sees the client's
//! WINDOW_ADJUST: the transfer deadlocks. The pump also checks SFTP framing
//! and ends the session on a packet longer than the maximum, because
//! russh-sftp would skip such a packet mid-stream and lose sync.

use super::fs::SftpSession;
use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio::io::AsyncWriteExt;

/// Largest SFTP packet accepted from a client (length field value), as
/// advertised in `limits@openssh.com` plus room for the request header.
pub const MAX_PACKET: u32 = 262_144 + 1024;

/// Bytes buffered between the pump and the SFTP loop.
const PIPE_CAPACITY: usize = 4 * 1024 * 1024;

pub fn serve(channel: Channel<Msg>, sftp: SftpSession) {
    let (mut read_half, write_half) = channel.split();
    let (loop_side, mut pump_side) = tokio::io::duplex(PIPE_CAPACITY);
    let (loop_read, _unused_write) = tokio::io::split(loop_side);
    let (loop_done_tx, loop_done) = tokio::sync::oneshot::channel::<()>();
    let writer = NotifyOnDrop {
        inner: write_half.make_writer(),
        _done: loop_done_tx,
    };
    let stream = tokio::io::join(loop_read, writer);
    tokio::spawn(async move {
        let mut framing = Framing::default();
        while let Some(msg) = read_half.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Err(len) = framing.feed(&data) {
                        tracing::warn!(
                            len,
                            max = MAX_PACKET,
                            "sftp packet over the maximum length; closing the session"
                        );
                        break;
                    }
                    if pump_side.write_all(&data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => {}
            }
        }
        // Dropping the pipe ends the SFTP loop (EOF) once it has answered
        // what it already read; the channel closes after its last reply.
        drop(pump_side);
        let _ = loop_done.await;
        let _ = write_half.eof().await;
        let _ = write_half.close().await;
    });
    let cfg = russh_sftp::server::Config {
        max_client_packet_len: MAX_PACKET,
    };
    tokio::spawn(russh_sftp::server::run_with_config(stream, sftp, cfg));
}

/// The SFTP loop's writer; its drop tells the pump the loop has ended.
struct NotifyOnDrop<W> {
    inner: W,
    _done: tokio::sync::oneshot::Sender<()>,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for NotifyOnDrop<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Follows SFTP packet boundaries (4-byte big-endian length, then body).
#[derive(Default)]
struct Framing {
    header: [u8; 4],
    header_len: usize,
    body_left: usize,
}

impl Framing {
    /// Consumes `data`; `Err(len)` on a packet length over [`MAX_PACKET`].
    fn feed(&mut self, mut data: &[u8]) -> Result<(), u32> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (4 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 4 {
                let len = u32::from_be_bytes(self.header);
                if len > MAX_PACKET {
                    return Err(len);
                }
                self.header_len = 0;
                self.body_left = len as usize;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(len: u32) -> Vec<u8> {
        let mut p = len.to_be_bytes().to_vec();
        p.resize(4 + len as usize, 7);
        p
    }

    #[test]
    fn framing_across_chunk_boundaries() {
        let mut f = Framing::default();
        let mut stream = packet(10);
        stream.extend(packet(MAX_PACKET));
        stream.extend(packet(0));
        for chunk in stream.chunks(3) {
            assert!(f.feed(chunk).is_ok());
        }
        assert_eq!((f.header_len, f.body_left), (0, 0));
    }

    #[test]
    fn oversized_packet_is_caught() {
        let mut f = Framing::default();
        assert!(f.feed(&packet(5)).is_ok());
        assert_eq!(f.feed(&(MAX_PACKET + 1).to_be_bytes()), Err(MAX_PACKET + 1));
    }
}
