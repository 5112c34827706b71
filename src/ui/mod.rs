//! The live view (`lbsim --ui`): a web page the control API serves at `GET /ui`, which
//! follows `GET /events` in the browser and shows each request on a time axis (how long
//! the LB and the app took, and how it ended: the app's answer, or the LB's own
//! 502/503/504 coloured by cause with the sentence that says why and the fix), the target
//! group's states over time, the counters (`GET /stats`) and the effective settings
//! (`GET /config`).
//!
//! The page is three files compiled into the binary (`include_str!`): no build step, and
//! nothing fetched from elsewhere, so it works offline and on a projector with no network.
//! Its `Content-Security-Policy` holds the browser to that (only the control API's own
//! origin). It costs the proxy nothing: the page is one more `GET /events` subscriber, and
//! a page that reads too slowly is dropped events (its stream's `lagged` line, shown on
//! the page), never a slower engine.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// One file of the page: where it is served, its content type and its bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asset {
    /// The control API path it is served at.
    pub(crate) path: &'static str,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Its contents, compiled in.
    pub(crate) body: &'static str,
}

/// Where the page is served; a browser's `GET /` on the control API is redirected here.
pub(crate) const PAGE_PATH: &str = "/ui";

/// The page, its script and its style sheet.
pub(crate) const ASSETS: [Asset; 3] = [
    Asset {
        path: PAGE_PATH,
        content_type: "text/html; charset=utf-8",
        body: include_str!("index.html"),
    },
    Asset {
        path: "/ui/live.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("live.js"),
    },
    Asset {
        path: "/ui/live.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("live.css"),
    },
];

/// Sent with every file of the page: the browser loads scripts, styles and data from the
/// control API itself and nowhere else (the page works offline, and a page of the control
/// API cannot be made to talk to another site).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The file served at `path`, if any.
pub(crate) fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Where `--ui` serves the control API (and so the page) without `--admin`: loopback, on
/// the port the README's examples use for `--admin`.
pub(crate) const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

/// The control API's listener for `--ui` without `--admin`: [`DEFAULT_ADDR`], or a
/// free loopback port when another program (another lbsim) has it.
pub(crate) fn bind_default() -> io::Result<TcpListener> {
    match crate::net::bind(DEFAULT_ADDR) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            crate::net::bind(SocketAddr::new(DEFAULT_ADDR.ip(), 0))
        }
        other => other,
    }
}

/// Asks the desktop to open `url` (`xdg-open`, `open` on macOS, `start` on Windows) and
/// says so; without a desktop (a server, a container) that fails, which is only a note:
/// the address is printed already.
pub(crate) fn open_in_browser(url: &str) {
    let (program, args): (&str, Vec<&str>) = if cfg!(target_os = "macos") {
        ("open", vec![url])
    } else if cfg!(windows) {
        ("cmd", vec!["/C", "start", "", url])
    } else {
        ("xdg-open", vec![url])
    };
    let spawned = tokio::process::Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(status) if status.success() => {}
                    Ok(status) => eprintln!(
                        "lbsim: note: {program} could not open a browser ({status}); open the \
                         live view's address yourself"
                    ),
                    Err(e) => eprintln!("lbsim: note: {program}: {e}"),
                }
            });
        }
        Err(e) => eprintln!(
            "lbsim: note: cannot open a browser ({program}: {e}); open the live view's address \
             yourself"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_found_by_its_path_and_typed() {
        assert_eq!(
            asset("/ui").map(|a| a.content_type),
            Some("text/html; charset=utf-8")
        );
        assert!(asset("/ui/live.js").is_some_and(|a| a.content_type.starts_with("text/javascript")));
        assert!(asset("/ui/live.css").is_some_and(|a| a.content_type.starts_with("text/css")));
        assert!(asset("/ui/other.js").is_none());
        // The page loads exactly the other two.
        let page = asset(PAGE_PATH).expect("the page").body;
        assert!(page.contains(r#"src="/ui/live.js""#) && page.contains(r#"href="/ui/live.css""#));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for a in ASSETS {
            for needle in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(
                    !a.body.contains(needle),
                    "{} contains {needle:?}: the page must work offline",
                    a.path
                );
            }
        }
    }
}
