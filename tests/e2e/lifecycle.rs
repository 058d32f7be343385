use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use vembed::{Client, ModelRef, Role};
use vembed_protocol::framing;
use vembed_protocol::{
    EmbedRequest, Hello, PROTOCOL_VERSION, Request, RequestFrame, Response, ResponseFrame,
};
use vembed_tests::{Env, pid_alive, wait_pid_gone};

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we started; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill {pid}");
}

#[test]
fn sigkilled_host_is_replaced_by_the_next_call() {
    let env = Env::new();
    let old = env.client().hello().pid;
    kill(old, libc::SIGKILL);
    assert!(wait_pid_gone(old, Duration::from_secs(10)));
    assert!(env.socket.exists(), "a SIGKILLed host leaves its socket file behind");
    let mut c = env.client();
    assert_ne!(c.hello().pid, old);
    assert_eq!(c.embed(&["after a crash"]).unwrap()[0].len(), 384);
}

#[test]
fn a_client_survives_its_host_dying_between_calls() {
    let env = Env::new();
    let mut c = env.client();
    let old = c.hello().pid;
    kill(old, libc::SIGKILL);
    assert!(wait_pid_gone(old, Duration::from_secs(10)));
    let v = c.embed(&["the library reconnects and starts a new host"]).unwrap();
    assert_eq!(v[0].len(), 384);
    assert_ne!(c.hello().pid, old);
}

#[test]
fn a_stale_socket_file_does_not_block_a_start() {
    let env = Env::new();
    // A socket file nobody listens on, as a crashed process leaves it.
    drop(UnixListener::bind(&env.socket).unwrap());
    assert!(env.socket.exists());
    assert!(UnixStream::connect(&env.socket).is_err());
    let mut c = env.client();
    assert_eq!(c.embed(&["stale socket replaced"]).unwrap()[0].len(), 384);
}

#[test]
fn two_hosts_started_at_once_end_with_one_serving() {
    let env = Env::new();
    let mut a = env.start_host(&[]);
    let mut b = env.start_host(&[]);
    let line = |c: &mut std::process::Child| {
        let mut l = String::new();
        BufReader::new(c.stdout.take().unwrap()).read_line(&mut l).unwrap();
        l.trim().to_string()
    };
    let (la, lb) = (line(&mut a), line(&mut b));
    let ready: Vec<&String> =
        [&la, &lb].into_iter().filter(|l| l.starts_with("vembed-host ready")).collect();
    let other: Vec<&String> =
        [&la, &lb].into_iter().filter(|l| *l == "vembed-host already-running").collect();
    assert_eq!((ready.len(), other.len()), (1, 1), "{la:?} / {lb:?}");
    let pid: u32 = ready[0].rsplit(' ').next().unwrap().parse().unwrap();
    let mut c = Client::connect(&env.socket).unwrap();
    assert_eq!(c.status().unwrap().pid, pid);
    let loser = if la == *ready[0] { &mut b } else { &mut a };
    assert!(loser.wait().unwrap().success(), "the second host exits cleanly");
    let _ = a.try_wait();
    let _ = b.try_wait();
}

#[test]
fn clients_racing_to_start_share_one_host() {
    let env = Env::new();
    let pids: Vec<u32> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| env.client().hello().pid)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(pids.iter().all(|&p| p == pids[0]), "{pids:?}");
}

#[test]
fn sigterm_finishes_requests_in_flight() {
    let env = Env::new();
    let pid = env.client().hello().pid;
    let mut s = UnixStream::connect(&env.socket).unwrap();
    framing::write_frame(
        &mut s,
        &RequestFrame {
            id: 0,
            request: Request::Hello(Hello { version: PROTOCOL_VERSION, client: "t".into() }),
        },
    )
    .unwrap();
    let texts: Vec<String> = (0..64).map(|i| format!("{i} {}", "in flight ".repeat(120))).collect();
    framing::write_frame(
        &mut s,
        &RequestFrame {
            id: 1,
            request: Request::Embed(EmbedRequest { model: ModelRef::Role(Role::Unified), texts }),
        },
    )
    .unwrap();
    let mut buf = Vec::new();
    framing::read_frame(&mut s, 256 << 20, &mut buf).unwrap(); // Hello reply
    std::thread::sleep(Duration::from_millis(200));
    kill(pid, libc::SIGTERM);
    framing::read_frame(&mut s, 256 << 20, &mut buf).unwrap();
    let reply: ResponseFrame = framing::decode(&buf).unwrap();
    match reply.response {
        Response::Embeddings(e) => {
            assert_eq!(e.len(), 64);
            assert!(e.data.iter().all(|x| x.is_finite()) && e.data.iter().any(|&x| x != 0.0));
        }
        other => panic!("in-flight request was not finished: {other:?}"),
    }
    assert!(wait_pid_gone(pid, Duration::from_secs(20)), "host exits after SIGTERM");
    assert!(!env.socket.exists(), "a clean stop removes the socket");
}

#[test]
fn idle_host_exits() {
    let mut env = Env::new();
    env.host_args.extend(["--idle-timeout-secs".into(), "1".into()]);
    let pid = {
        let mut c = env.client();
        c.embed(&["brief visit"]).unwrap();
        c.hello().pid
    };
    assert!(wait_pid_gone(pid, Duration::from_secs(15)), "idle host should exit");
}

#[test]
fn vembed_stop_stops_the_host() {
    let env = Env::new();
    let pid = env.client().hello().pid;
    let out = env.vembed(&["stop"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_pid_gone(pid, Duration::from_secs(10)));
    let out = env.vembed(&["stop"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no vembed host"));
}

/// A peer running as another uid is refused by SO_PEERCRED, not just by file
/// permissions: the child keeps root's file-system uid (so it can reach the
/// 0600 socket) but connects with effective uid `nobody`.
#[test]
fn a_peer_with_another_uid_is_refused() {
    vembed_tests::require_root("drops to another uid");
    let env = Env::new();
    let mut owner = env.client();
    let path = std::ffi::CString::new(env.socket.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: the child only makes raw system calls on memory prepared before
    // fork (no allocation, no locks) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: see above; every call is async-signal-safe.
        unsafe {
            if libc::setresuid(0, 65534, 0) != 0 {
                libc::_exit(20);
            }
            libc::setfsuid(0);
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let bytes = path.as_bytes_with_nul();
            if bytes.len() > addr.sun_path.len() {
                libc::_exit(21);
            }
            for (i, b) in bytes.iter().enumerate() {
                addr.sun_path[i] = *b as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
                libc::_exit(10);
            }
            let mut buf = [0u8; 256];
            let mut got = 0usize;
            while got < 20 {
                let n =
                    libc::read(fd, buf.as_mut_ptr().add(got) as *mut libc::c_void, buf.len() - got);
                if n <= 0 {
                    libc::_exit(11);
                }
                got += n as usize;
            }
            // length (4), id (8), Response::Error tag 0 (4), ErrorCode::PermissionDenied = 7 (4)
            let tag = u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
            let code = u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]);
            libc::_exit(if tag == 0 && code == 7 { 0 } else { 12 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child died: {status}");
    let code = libc::WEXITSTATUS(status);
    assert_eq!(
        code, 0,
        "child exit {code}: 10 = connect failed, 11 = no reply, 12 = not PermissionDenied"
    );
    // The owner is still served.
    assert_eq!(owner.embed(&["owner still served"]).unwrap()[0].len(), 384);
    assert!(pid_alive(owner.hello().pid));
}

/// With one inference thread, the batcher and candle's kernels share that
/// one pool thread: bulk work and a query at once must both finish.
#[test]
fn a_single_thread_host_serves_bulk_and_queries_together() {
    let mut env = Env::new();
    env.host_args.extend(["--threads".into(), "1".into()]);
    let mut a = env.client();
    assert_eq!(a.status().unwrap().threads, 1);
    let texts: Vec<String> = (0..40).map(|i| format!("{i} {}", "bulk work ".repeat(60))).collect();
    std::thread::scope(|s| {
        let bulk = s.spawn(|| {
            let mut c = env.client();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            c.embed_with(&ModelRef::Role(Role::Code), &refs).unwrap().len()
        });
        for i in 0..5 {
            assert_eq!(a.embed(&[&format!("query {i}")]).unwrap()[0].len(), 384);
        }
        assert_eq!(bulk.join().unwrap(), 40);
    });
}
