use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

const HANDSHAKE: Duration = Duration::from_secs(10);
const MAX_FRAME: u64 = 1 << 20;

/// A guarded read half over one end of a pipe, and its link.
fn guarded(inner: DuplexStream) -> (GuardedRead<DuplexStream>, Arc<Link>) {
    let links = Links::new(4);
    let link = links.open("127.0.0.1:9".into(), None);
    let guard = ReadGuard {
        link: link.clone(),
        until: tokio::time::Instant::now() + HANDSHAKE,
        deadline: Some(Box::pin(tokio::time::sleep(HANDSHAKE))),
        handshake: HANDSHAKE,
        max_frame: MAX_FRAME,
        frame: Frame::START,
    };
    (GuardedRead { inner, guard }, link)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = (body.len() as u64).to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads one frame as ractor_cluster does: the length, then the body in chunks.
async fn read_frame(reader: &mut GuardedRead<DuplexStream>) -> std::io::Result<Vec<u8>> {
    let length = reader.read_u64().await? as usize;
    let mut body = Vec::new();
    let mut chunk = [0u8; 8192];
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        let n = reader.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(body)
}

#[tokio::test(start_paused = true)]
async fn frames_pass_whole_and_in_order() {
    let (mut peer, ours) = tokio::io::duplex(1 << 20);
    let (mut reader, link) = guarded(ours);
    link.authenticate();
    let bodies = [vec![], vec![7], vec![1; 100_000], b"last".to_vec()];
    for body in &bodies {
        peer.write_all(&frame(body)).await.unwrap();
    }
    for body in &bodies {
        assert_eq!(&read_frame(&mut reader).await.unwrap(), body);
    }
    drop(peer);
    // Closed between frames: an end of file, as from the socket itself.
    let err = reader.read_u64().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[tokio::test(start_paused = true)]
async fn small_frames_pass_before_authentication() {
    let (mut peer, ours) = tokio::io::duplex(1 << 20);
    let (mut reader, _link) = guarded(ours);
    let body = vec![3; PRE_AUTH_FRAME as usize];
    peer.write_all(&frame(&body)).await.unwrap();
    assert_eq!(read_frame(&mut reader).await.unwrap(), body);
}

#[tokio::test(start_paused = true)]
async fn a_large_frame_before_authentication_waits_for_it() {
    let (mut peer, ours) = tokio::io::duplex(1 << 20);
    let (mut reader, link) = guarded(ours);
    let body = vec![5; PRE_AUTH_FRAME as usize + 1];
    peer.write_all(&frame(&body)).await.unwrap();
    let read = tokio::spawn(async move { read_frame(&mut reader).await });
    tokio::time::sleep(HANDSHAKE / 2).await;
    assert!(
        !read.is_finished(),
        "the frame was handed on before authentication"
    );
    link.authenticate();
    assert_eq!(read.await.unwrap().unwrap(), body);
}

#[tokio::test(start_paused = true)]
async fn a_large_frame_before_authentication_fails_at_the_deadline() {
    let (mut peer, ours) = tokio::io::duplex(1 << 20);
    let (mut reader, _link) = guarded(ours);
    peer.write_all(&(MAX_FRAME - 1).to_be_bytes())
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = reader.read_u64().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), HANDSHAKE);
}

#[tokio::test(start_paused = true)]
async fn a_silent_link_fails_at_the_deadline() {
    let (_peer, ours) = tokio::io::duplex(64);
    let (mut reader, _link) = guarded(ours);
    let started = tokio::time::Instant::now();
    let err = reader.read_u64().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
    assert_eq!(started.elapsed(), HANDSHAKE);
}

#[tokio::test(start_paused = true)]
async fn a_link_that_stops_mid_frame_before_authentication_fails_at_the_deadline() {
    let (mut peer, ours) = tokio::io::duplex(1 << 20);
    let (mut reader, _link) = guarded(ours);
    // The length and half the body; the rest never comes.
    peer.write_all(&frame(&[1; 64])[..40]).await.unwrap();
    let err = read_frame(&mut reader).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_keeps_sending_empty_frames_still_meets_the_deadline() {
    let (mut peer, ours) = tokio::io::duplex(1 << 20);
    let (mut reader, _link) = guarded(ours);
    // A mebibyte of empty frames, there before the reader looks, and the deadline passed: the
    // reader never finds the socket empty, so only a look at the clock on each read stops it.
    peer.write_all(&vec![0u8; 1 << 20]).await.unwrap();
    tokio::time::advance(HANDSHAKE + Duration::from_millis(1)).await;
    let mut read = 0;
    let err = loop {
        match read_frame(&mut reader).await {
            Ok(frame) => {
                assert!(frame.is_empty());
                read += 1;
            }
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(read, 0, "frames were taken past the deadline");
}

#[tokio::test(start_paused = true)]
async fn an_authenticated_link_has_no_deadline() {
    let (mut peer, ours) = tokio::io::duplex(1 << 20);
    let (mut reader, link) = guarded(ours);
    link.authenticate();
    let read = tokio::spawn(async move { read_frame(&mut reader).await });
    tokio::time::sleep(HANDSHAKE * 3).await;
    assert!(!read.is_finished());
    peer.write_all(&frame(b"late")).await.unwrap();
    assert_eq!(read.await.unwrap().unwrap(), b"late");
}

#[tokio::test(start_paused = true)]
async fn a_frame_over_the_limit_is_refused_even_after_authentication() {
    let (mut peer, ours) = tokio::io::duplex(64);
    let (mut reader, link) = guarded(ours);
    link.authenticate();
    for length in [MAX_FRAME + 1, u64::MAX] {
        peer.write_all(&length.to_be_bytes()).await.unwrap();
        let err = reader.read_u64().await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        reader.guard.frame = Frame::START;
    }
}

#[test]
fn links_match_sessions_in_the_order_they_were_handed_over() {
    let links = Links::new(2);
    let first = links.open("10.0.0.1:7171".into(), None);
    let second = links.open("10.0.0.1:7171".into(), None);
    links.opened(1, "10.0.0.1:7171");
    links.opened(2, "10.0.0.1:7171");
    links.authenticated(2);
    assert!(!first.is_authenticated());
    assert!(second.is_authenticated());
    // A session of no link of ours (or one already closed) changes nothing.
    links.opened(3, "10.0.0.9:1");
    links.authenticated(3);
    assert!(!links.closed(1));
    links.authenticated(1);
    assert!(!first.is_authenticated());
}

#[tokio::test(start_paused = true)]
async fn a_session_closed_at_its_deadline_says_so_when_it_ends() {
    let links = Links::new(2);
    let (_peer, ours) = tokio::io::duplex(64);
    let link = links.open("127.0.0.1:9".into(), None);
    links.opened(7, "127.0.0.1:9");
    let mut reader = GuardedRead {
        inner: ours,
        guard: ReadGuard {
            link,
            until: tokio::time::Instant::now() + HANDSHAKE,
            deadline: Some(Box::pin(tokio::time::sleep(HANDSHAKE))),
            handshake: HANDSHAKE,
            max_frame: MAX_FRAME,
            frame: Frame::START,
        },
    };
    assert!(reader.read_u64().await.is_err());
    // ractor_cluster drops the reader before it reports the session's end.
    drop(reader);
    assert!(links.closed(7));
    assert!(!links.closed(7), "reported once");
}

#[test]
fn a_slot_is_given_back_when_the_link_authenticates_or_closes() {
    let links = Links::new(2);
    let take = || links.slots.clone().try_acquire_owned().ok();
    let a = links.open("a".into(), take());
    let b = links.open("b".into(), take());
    assert!(take().is_none(), "the cap holds");
    assert_eq!(links.pending(2), 2);
    links.opened(1, "a");
    links.authenticated(1);
    assert_eq!(links.pending(2), 1);
    // The guard of a link gives its slot back when the link closes.
    let guard = ReadGuard {
        link: b,
        until: tokio::time::Instant::now(),
        deadline: None,
        handshake: HANDSHAKE,
        max_frame: MAX_FRAME,
        frame: Frame::START,
    };
    drop(guard);
    assert_eq!(links.pending(2), 0);
    drop(a);
}

proptest! {
    /// Whatever the sizes of the frames, and however the bytes arrive and are asked for, the
    /// reader hands on exactly the bytes the peer sent.
    #[test]
    fn the_guard_changes_no_byte(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..12),
        pieces in proptest::collection::vec(1usize..700, 1..20),
        asks in proptest::collection::vec(1usize..5000, 1..20),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (mut peer, ours) = tokio::io::duplex(1 << 16);
            let (mut reader, link) = guarded(ours);
            let sent: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
            let writing = sent.clone();
            let writer = tokio::spawn(async move {
                let mut at = 0;
                for piece in pieces.iter().cycle() {
                    if at == writing.len() {
                        break;
                    }
                    let end = (at + piece).min(writing.len());
                    peer.write_all(&writing[at..end]).await.unwrap();
                    at = end;
                }
            });
            // Frames larger than the first ones would wait for authentication.
            link.authenticate();
            let mut got = Vec::new();
            let mut buffer = vec![0u8; 5000];
            for ask in asks.iter().cycle() {
                if got.len() == sent.len() {
                    break;
                }
                let n = reader.read(&mut buffer[..*ask]).await.unwrap();
                prop_assert!(n > 0, "an end of file before the last byte");
                got.extend_from_slice(&buffer[..n]);
            }
            writer.await.unwrap();
            prop_assert_eq!(got, sent);
            Ok(())
        })?;
    }
}
