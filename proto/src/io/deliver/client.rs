//! The HTTP/1.1 client of the destinations that speak HTTP (`http`, `s3`): hyper's client
//! connection over async-io (smol-hyper's adapter), TLS by futures-rustls, connections
//! to one origin kept alive and reused (the [`Pool`] and connect of `pool.rs`, which the
//! LMTP link shares), at most `GSMTP_HTTP_CONNECTIONS` requests at once.
//! No hand-written HTTP.

use std::io;
use std::path::Path;

use async_lock::Semaphore;
use bytes::Bytes;
use futures_rustls::TlsConnector;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use rustls_pki_types::ServerName;
use smol_hyper::rt::FuturesIo;

use super::pool::Pool;
use super::spool::SpoolReader;
use crate::config::{ConfigError, HttpUrl};
use crate::io::runtime::Runtime;

/// A request body: a spool read in pieces, or a few octets.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// A response: its status, its headers, and its body (at most what [`Client::send`]
/// was told to read).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// Connections to one origin.
pub(crate) struct Client<R: Runtime> {
    rt: R,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Connections kept alive between requests.
    idle: Pool<SendRequest<Body>>,
    slots: Semaphore,
}

impl<R: Runtime> std::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Client<R> {
    /// A client of `url`'s origin; for `https`, trusting the system's CAs and those of
    /// `ca`. Errors name `url_key` or `GSMTP_HTTP_CA`.
    pub(crate) fn new(
        rt: R,
        url: &HttpUrl,
        url_key: &str,
        ca: Option<&Path>,
        connections: usize,
    ) -> Result<Self, ConfigError> {
        let tls = match url.tls {
            true => {
                let connector = crate::io::tls::connector(ca, "GSMTP_HTTP_CA")?;
                let name = ServerName::try_from(url.host.clone()).map_err(|e| ConfigError {
                    key: url_key.into(),
                    message: format!("{}: {e}", url.host),
                })?;
                Some((connector, name))
            }
            false => None,
        };
        Ok(Self {
            rt,
            host: url.host.clone(),
            port: url.port,
            tls,
            idle: Pool::new(connections),
            slots: Semaphore::new(connections),
        })
    }

    /// A body of `bytes`.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
        Full::new(bytes.into())
            .map_err(|e| match e {})
            .boxed_unsync()
    }

    /// A body read from a spool, in pieces, on the runtime's thread pool.
    pub(crate) fn stream(&self, reader: SpoolReader) -> Body {
        StreamBody::new(self.pieces(reader)).boxed_unsync()
    }

    /// A body of `head`, then what `reader` reads from a spool, then `tail`.
    pub(crate) fn stream_between(&self, head: Vec<u8>, reader: SpoolReader, tail: Vec<u8>) -> Body {
        use futures_lite::StreamExt as _;
        let edge = |b: Vec<u8>| futures_lite::stream::once(Ok(Frame::data(Bytes::from(b))));
        let all = edge(head).chain(self.pieces(reader)).chain(edge(tail));
        StreamBody::new(all).boxed_unsync()
    }

    /// The frames of a spool's text.
    fn pieces(
        &self,
        reader: SpoolReader,
    ) -> impl futures_lite::Stream<Item = io::Result<Frame<Bytes>>> + Send + 'static {
        let rt = self.rt.clone();
        futures_lite::stream::unfold(Some(reader), move |reader| {
            let rt = rt.clone();
            async move {
                let mut reader = reader?;
                match reader.next(&rt).await {
                    Ok(Some(piece)) => Some((Ok(Frame::data(Bytes::from(piece))), Some(reader))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
    }

    /// Sends `req` and reads the response, its body up to `max_body` octets (a longer
    /// one costs the connection, which is then not reused). A kept-alive connection the
    /// server has closed meanwhile gives the request back unsent, and it goes again on a
    /// new connection; once sent, a request never goes twice. The caller bounds the time.
    pub(crate) async fn send(
        &self,
        mut req: hyper::Request<Body>,
        max_body: usize,
    ) -> io::Result<Answer> {
        let _slot = self.slots.acquire().await;
        let (sender, response) = loop {
            let (mut sender, reused) = self.connection().await?;
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(io::Error::other("the connection closed before the request"));
            }
            match sender.try_send_request(req).await {
                Ok(response) => break (sender, response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(io::Error::other(e.into_error())),
                },
            }
        };
        let status = response.status().as_u16();
        let (parts, mut body) = response.into_parts();
        let mut answer = Vec::new();
        let mut whole = true;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
                answer.extend_from_slice(&data);
            }
            if answer.len() > max_body {
                whole = false;
                break;
            }
        }
        if whole && !sender.is_closed() {
            self.idle.put(sender);
        }
        Ok(Answer {
            status,
            headers: parts.headers,
            body: answer,
        })
    }

    /// A connection to the origin: one kept alive (`true`), or a new one.
    async fn connection(&self) -> io::Result<(SendRequest<Body>, bool)> {
        if let Some(sender) = self.idle.take(|s| !s.is_closed()) {
            return Ok((sender, true));
        }
        let tcp = super::pool::connect(&self.rt, (self.host.clone(), self.port)).await?;
        let sender = match &self.tls {
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await?;
                self.handshake(tls).await
            }
            None => self.handshake(tcp).await,
        };
        sender.map(|s| (s, false))
    }

    /// hyper's HTTP/1.1 handshake over `stream`; the connection's task runs on the
    /// runtime until the connection ends.
    async fn handshake<S>(&self, stream: S) -> io::Result<SendRequest<Body>>
    where
        S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(FuturesIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        self.rt.spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}
