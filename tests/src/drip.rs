//! The drip-feed attack of issue 25, as the drip-feed test and the soak make it: requests whose
//! head or body arrive one byte at a time, and checks on fresh connections as HAProxy sends
//! them.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ADMIN;

/// How one drip-fed request ended.
#[derive(Debug)]
pub struct Outcome {
    /// Whether the head was drip-fed (else the body).
    pub slow_head: bool,
    /// From the connection's start to the answer or the close.
    pub took: Duration,
    /// The answer's first line and code, if any came.
    pub answer: String,
}

/// One request drip-fed to `address` (a byte every `drip`) until the unit answers or closes,
/// or `give_up_after` passes.
pub async fn drip_one(
    address: std::net::SocketAddr,
    slow_head: bool,
    drip: Duration,
    give_up_after: Duration,
) -> Outcome {
    let started = Instant::now();
    let Ok(stream) = TcpStream::connect(address).await else {
        return Outcome {
            slow_head,
            took: started.elapsed(),
            answer: "connect failed".into(),
        };
    };
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Accept: application/json\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let (at_once, dripped) = if slow_head {
        (Vec::new(), head.into_bytes())
    } else {
        (head.into_bytes(), vec![b' '; 1000])
    };
    let drip = tokio::spawn(async move {
        writer.write_all(&at_once).await?;
        for byte in dripped {
            writer.write_all(&[byte]).await?;
            tokio::time::sleep(drip).await;
        }
        Ok::<_, std::io::Error>(writer)
    });
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let limit = give_up_after;
    while let Ok(Ok(read)) = tokio::time::timeout(
        limit.saturating_sub(started.elapsed()),
        reader.read(&mut buffer),
    )
    .await
    {
        if read == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..read]);
    }
    let took = started.elapsed();
    drip.abort();
    let text = String::from_utf8_lossy(&received);
    let answer = match (text.lines().next(), text.find("\"code\"")) {
        (Some(status), Some(code)) => format!("{status} {}", &text[code..]),
        (Some(status), None) => status.to_owned(),
        (None, _) => String::new(),
    };
    Outcome {
        slow_head,
        took,
        answer,
    }
}

/// A check on a fresh connection, as HAProxy sends it: how long the answer took, or what went
/// wrong.
pub async fn check(address: std::net::SocketAddr, path: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| format!("{path}: no answer within 2 s"))??;
    let passes =
        answer.starts_with("HTTP/1.1 200") && (path != "/health" || answer.contains("PASS"));
    if passes {
        Ok(started.elapsed())
    } else {
        Err(format!("{path}: {answer}"))
    }
}
