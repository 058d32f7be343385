//! HTTP helpers for the tests of the host's HTTP front door: a host started
//! with an HTTP listener on a free loopback port, and a plain HTTP/1.1
//! exchange over a real TCP (or Unix) socket. The tests of real client
//! libraries (the openai SDK, LangChain, ollama-python, LlamaIndex) are in
//! `python/tests/full`; these check the wire itself, including requests no
//! well-behaved client would send.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::Duration;

use crate::Env;

/// A free loopback port (bound, then released for the host to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A host of `env` serving HTTP on a free port, started and ready.
pub struct HttpHost {
    /// The host process.
    pub child: Child,
    /// Where it serves HTTP.
    pub addr: SocketAddr,
}

impl HttpHost {
    /// Starts a host with `--http-listen` on a free port plus `extra` flags,
    /// and waits for its ready line (panicking with its error line otherwise).
    pub fn start(env: &Env, extra: &[&str]) -> HttpHost {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        HttpHost::start_on(env, addr, extra)
    }

    /// Starts a host serving HTTP on `addr` (to bring one back on the port
    /// a killed one had).
    pub fn start_on(env: &Env, addr: SocketAddr, extra: &[&str]) -> HttpHost {
        let listen = addr.to_string();
        let mut args = vec!["--http-listen", listen.as_str()];
        args.extend_from_slice(extra);
        let mut child = env.start_host(&args);
        let line = ready_line(&mut child);
        assert!(line.starts_with("vembed-host ready"), "host did not start: {line}");
        HttpHost { child, addr }
    }

    /// The host's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HttpHost {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// The first line a host prints on stdout.
pub fn ready_line(child: &mut Child) -> String {
    let mut l = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut l).unwrap();
    l.trim().to_string()
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("status {}: body is not JSON ({e}): {}", self.status, self.text())
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One request on a new connection (`Connection: close`), its response read to the end.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    exchange(&mut s, method, path, headers, body)
}

/// One request over a stream already connected, with `Connection: close`.
pub fn exchange<S: Read + Write>(
    s: &mut S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413, say) before reading the whole body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw, method == "HEAD")
}

/// Parses a raw HTTP/1.1 response (content-length or read-to-close bodies).
pub fn parse(raw: &[u8], head_only: bool) -> Reply {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no complete response head in {:?}", String::from_utf8_lossy(raw))
    });
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(n) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap())
    {
        if !head_only {
            assert!(body.len() >= n, "body cut short: {} of {n} bytes", body.len());
        }
        body.truncate(n);
    }
    Reply { status, headers, body }
}

/// `POST path` with a JSON body.
pub fn post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Reply {
    request(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"")
}

/// The rows of an OpenAI embeddings response, float format.
pub fn openai_rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {v}"))
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["index"], i, "{d}");
            d["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
        })
        .collect()
}

/// Rows of a JSON array of arrays of numbers.
pub fn rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

/// The value of one series of a Prometheus exposition (`name{labels}`
/// exactly as written), or 0 when it is absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.rsplit_once(' ').filter(|(k, _)| *k == series).map(|(_, v)| v.parse().unwrap())
        })
        .unwrap_or(0.0)
}
