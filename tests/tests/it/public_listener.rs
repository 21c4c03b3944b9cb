//! The public listener (`http.public_bind`, issue 17 items 6–7): a visitor
//! there chats with an agent on the loopback listener; every agent, admin,
//! ops, metrics, LAN and workstation route is absent (404 as an unknown
//! path); an agent token cannot open a WebSocket there; the Host check
//! refuses a rebinding name; TLS with the shop's certificate, issued by a
//! CA made here, is verified by a client that trusts that CA and refused
//! by one that does not.

use std::sync::Arc;

use kefu_tests::{Closed, TestServer, Ws, assert_error, read};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

pub(crate) const PUBLIC_HOST: &str = "chat.shop.test";

async fn server_with_public(adjust: impl FnOnce(&mut kefu_server::Config)) -> TestServer {
    TestServer::start_with(|config| {
        config.http.public_bind = Some("127.0.0.1:0".parse().expect("addr"));
        config.http.public_url = Some(format!("https://{PUBLIC_HOST}"));
        adjust(config);
    })
    .await
}

fn public_base(server: &TestServer) -> String {
    kefu_tests::in_process_only("reads the public listener's address from the in-process server");
    let addr = server
        .running
        .as_ref()
        .expect("running")
        .public_addr
        .expect("public listener");
    format!("http://{addr}")
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    read(request.send().await.expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_the_public_listener_chats_with_an_agent_on_loopback() {
    let mut server = server_with_public(|_| {}).await;
    let public = public_base(&server);
    let app = server
        .app(json!({"allowed_origins": ["https://shop.example"]}))
        .await;
    let agent = server.agent("amy").await;
    let http = reqwest::Client::new();

    // The admin's embed snippet uses the public address.
    let admin = server.admin().await;
    let (status, body) = server
        .get(
            &format!("/api/v1/apps/{}", app["id"].as_str().expect("id")),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["public_url"], format!("https://{PUBLIC_HOST}"));
    let (_, body) = server.get("/api/v1/apps", Some(&admin)).await;
    assert_eq!(body["public_url"], format!("https://{PUBLIC_HOST}"));

    // The widget: loader, frame, and every asset the frame names.
    let response = http
        .get(format!("{public}/widget.js"))
        .send()
        .await
        .expect("widget.js");
    assert_eq!(response.status(), StatusCode::OK);
    let frame = http
        .get(format!(
            "{public}/widget/frame.html?app_key={}",
            app["app_key"].as_str().expect("key")
        ))
        .send()
        .await
        .expect("frame");
    assert_eq!(frame.status(), StatusCode::OK);
    let html = frame.text().await.expect("html");
    let assets: Vec<&str> = html
        .split('"')
        .filter(|part| part.starts_with("/widget/assets/"))
        .collect();
    assert!(!assets.is_empty(), "the frame names its assets: {html}");
    for asset in assets {
        let response = http
            .get(format!("{public}{asset}"))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
    }
    let (status, _) = get(&http, &format!("{public}/readyz"), None).await;
    assert_eq!(status, StatusCode::OK);

    // A session and the visitor's config, from the shop's origin.
    let response = http
        .post(format!("{public}/api/v1/visitor/sessions"))
        .header("origin", "https://shop.example")
        .json(&json!({"app_key": app["app_key"]}))
        .send()
        .await
        .expect("session");
    let (status, session) = read(response).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let visitor_token = session["token"].as_str().expect("token").to_owned();
    let conversation = session["conversation_id"]
        .as_str()
        .expect("conversation")
        .to_owned();
    let (status, config) = get(
        &http,
        &format!(
            "{public}/api/v1/visitor/config?app_key={}",
            app["app_key"].as_str().expect("key")
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{config}");

    // Another site's origin is refused there as on loopback.
    let response = http
        .post(format!("{public}/api/v1/visitor/sessions"))
        .header("origin", "https://evil.example")
        .json(&json!({"app_key": app["app_key"]}))
        .send()
        .await
        .expect("session");
    let (status, body) = read(response).await;
    assert_error(status, &body, 403, "forbidden");

    // The agent on loopback, the visitor on the public listener.
    let mut agent_ws = server.ws(&agent.token, json!({})).await;
    let public_ws_url = format!("{}/api/v1/ws", public.replacen("http", "ws", 1));
    let mut visitor_ws = visitor_ws(&public_ws_url, &visitor_token).await;
    visitor_ws
        .send(json!({"type": "send", "conversation_id": conversation, "client_msg_id": "v-1", "content": "hello from the internet"}))
        .await;
    let ack = visitor_ws.next_of("ack").await;
    assert_eq!(ack["client_msg_id"], "v-1", "{ack}");
    let seen = agent_ws.next_of("message").await;
    assert_eq!(
        seen["message"]["content"], "hello from the internet",
        "{seen}"
    );

    let (status, reply) = server
        .agent_says(&agent, &conversation, "a-1", "hello from the shop")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let got = visitor_ws.next_of("message").await;
    assert_eq!(got["message"]["content"], "hello from the shop", "{got}");

    // Visitor REST on the public listener: the whole conversation.
    let (status, page) = get(
        &http,
        &format!("{public}/api/v1/visitor/messages"),
        Some(&visitor_token),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let contents: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(contents.contains(&"hello from the internet"), "{page}");
    assert!(contents.contains(&"hello from the shop"), "{page}");

    // Rating a bot answer is a visitor route too: served there (the
    // visitor's own message is not a bot answer: 400, not a hidden 404).
    let response = http
        .post(format!("{public}/api/v1/visitor/assist/rating"))
        .bearer_auth(&visitor_token)
        .json(&json!({"seq": 1, "rating": "up"}))
        .send()
        .await
        .expect("rating");
    let (status, body) = read(response).await;
    assert_error(status, &body, 400, "bad_request");

    // A visitor upload there, and its download by URL key.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"%PDF-1.4\n%public listener\n".to_vec())
            .file_name("note.pdf"),
    );
    let response = http
        .post(format!("{public}/api/v1/visitor/attachments"))
        .header("origin", "https://shop.example")
        .bearer_auth(&visitor_token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let (status, upload) = read(response).await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    let url = upload["attachment"]["url"]
        .as_str()
        .or_else(|| upload["url"].as_str())
        .expect("url")
        .to_owned();
    let response = http
        .get(format!("{public}{url}"))
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .bytes()
            .await
            .expect("bytes")
            .starts_with(b"%PDF-1.4")
    );
    server.shutdown().await;
}

async fn visitor_ws(url: &str, token: &str) -> Ws {
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("request");
    request
        .headers_mut()
        .insert("origin", "https://shop.example".parse().expect("origin"));
    let (stream, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("ws connect");
    let mut ws = Ws { stream };
    ws.send(json!({"type": "hello", "token": token})).await;
    let welcome = ws.next().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["role"], "visitor", "{welcome}");
    ws
}

/// Every route that is not a visitor's: on loopback it exists (any status
/// but 404), on the public listener it answers exactly as a path that
/// was never there, with the admin's token too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_admin_ops_and_lan_routes_are_absent_from_the_public_listener() {
    let mut server = server_with_public(|_| {}).await;
    let public = public_base(&server);
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    let conversation = visitor.conversation_id.clone();
    let http = reqwest::Client::new();

    let (status, unknown) = get(&http, &format!("{public}/no/such/path"), None).await;
    assert_error(status, &unknown, 404, "not_found");
    let (status, unknown_api) = get(&http, &format!("{public}/api/v1/nothing"), None).await;
    assert_error(status, &unknown_api, 404, "not_found");
    assert_eq!(unknown, unknown_api);

    let routes: Vec<(&str, String)> = vec![
        ("GET", "/".into()),
        ("GET", "/index.html".into()),
        ("GET", "/metrics".into()),
        ("POST", "/api/v1/auth/login".into()),
        ("POST", "/api/v1/auth/logout".into()),
        ("GET", "/api/v1/agents".into()),
        ("POST", "/api/v1/agents".into()),
        ("GET", "/api/v1/agents/me".into()),
        ("GET", "/api/v1/agents/me/unread".into()),
        ("GET", "/api/v1/apps".into()),
        ("GET", "/api/v1/conversations".into()),
        ("GET", format!("/api/v1/conversations/{conversation}")),
        (
            "GET",
            format!("/api/v1/conversations/{conversation}/messages"),
        ),
        (
            "POST",
            format!("/api/v1/conversations/{conversation}/assign"),
        ),
        ("GET", "/api/v1/tickets".into()),
        ("GET", "/api/v1/tickets/1".into()),
        ("POST", "/api/v1/attachments".into()),
        ("GET", "/api/v1/canned_replies".into()),
        ("GET", "/api/v1/search?q=hello".into()),
        ("GET", "/api/v1/reports/summary".into()),
        ("GET", "/api/v1/audit".into()),
        ("GET", "/api/v1/routing".into()),
        ("GET", "/api/v1/queue".into()),
        ("GET", "/api/v1/teams".into()),
        ("POST", "/api/v1/admin/backup".into()),
        ("GET", "/api/v1/lan/status".into()),
        ("GET", "/api/v1/lan/devices".into()),
    ];
    for (method, path) in &routes {
        let method: reqwest::Method = method.parse().expect("method");
        let on_loopback = server
            .http
            .request(method.clone(), server.url(path))
            .send()
            .await
            .expect("loopback");
        assert_ne!(
            on_loopback.status(),
            StatusCode::NOT_FOUND,
            "{method} {path} exists on loopback"
        );
        for token in [None, Some(admin.as_str())] {
            let mut request = http.request(method.clone(), format!("{public}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let (status, body) = read(request.send().await.expect("public")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
            assert_eq!(body, unknown, "{method} {path} looks like no route");
        }
    }
    // A wrong method on a hidden route is a 404 too (not 405).
    let (status, body) = read(
        http.delete(format!("{public}/api/v1/agents/me"))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!((status, &body), (StatusCode::NOT_FOUND, &unknown));
    // Pairing routes exist only on the LAN listener.
    let (status, _) = get(&http, &format!("{public}/lan/v1/pair"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An agent (even the admin) cannot say hello on the public WebSocket:
    // refused as an invalid token.
    let mut ws = Ws::connect(&format!("{}/api/v1/ws", public.replacen("http", "ws", 1))).await;
    ws.send(json!({"type": "hello", "token": admin})).await;
    assert_eq!(ws.closed().await, Closed::Code(4401));
    // An agent token on a visitor route there is as unknown as any other
    // (on loopback: 403, a visitor route).
    let (status, body) = get(
        &http,
        &format!("{public}/api/v1/visitor/messages"),
        Some(&admin),
    )
    .await;
    let (_, unknown_token) = get(
        &http,
        &format!("{public}/api/v1/visitor/messages"),
        Some("kf_not_a_token"),
    )
    .await;
    assert_error(status, &body, 401, "unauthorized");
    assert_eq!(body, unknown_token);
    let (status, body) = server.get("/api/v1/visitor/messages", Some(&admin)).await;
    assert_error(status, &body, 403, "forbidden");
    // The same admin token still works on loopback (the public logout
    // above did not reach it).
    let mut agent_ws = server.ws(&admin, json!({})).await;
    agent_ws.silent(std::time::Duration::from_millis(50)).await;
    server.shutdown().await;
}

/// DNS rebinding: a page on a name the attacker points at the public
/// listener's address gets 421; the public URL's host and the listener's
/// address are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_check_covers_the_public_listener() {
    let server = server_with_public(|_| {}).await;
    let public = public_base(&server);
    let http = reqwest::Client::new();
    for host in ["evil.example", "chat.shop.test.evil.example", "kefu.local"] {
        let (status, body) = read(
            http.get(format!("{public}/widget.js"))
                .header("host", host)
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_error(status, &body, 421, "misdirected_request");
        let (status, body) = read(
            http.post(format!("{public}/api/v1/visitor/sessions"))
                .header("host", host)
                .json(&json!({"app_key": "ak_x"}))
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_error(status, &body, 421, "misdirected_request");
    }
    for host in [PUBLIC_HOST, "CHAT.SHOP.TEST:443", "127.0.0.1"] {
        let response = http
            .get(format!("{public}/healthz"))
            .header("host", host)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    server.shutdown().await;
}

/// A CA, and a certificate for `chat.shop.test` and 127.0.0.1 it issued,
/// as PEM files in `dir`; returns the CA certificate (DER).
pub(crate) fn issue_certificate(
    dir: &std::path::Path,
) -> rustls::pki_types::CertificateDer<'static> {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Kefu test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        rcgen::CertificateParams::new(vec![PUBLIC_HOST.to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, PUBLIC_HOST);
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
    // The chain as a shop gets it: leaf, then the CA.
    std::fs::write(
        dir.join("fullchain.pem"),
        format!("{}{}", leaf.pem(), ca_cert.pem()),
    )
    .expect("write chain");
    std::fs::write(dir.join("privkey.pem"), leaf_key.serialize_pem()).expect("write key");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca");
    ca_cert.der().clone()
}

pub(crate) fn connector(ca: Option<&rustls::pki_types::CertificateDer<'static>>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => roots.add(ca.clone()).expect("root"),
        None => {
            // Another CA, which never issued the server's certificate.
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let other = params.self_signed(&key).expect("cert");
            roots.add(other.der().clone()).expect("root");
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(kefu_server::lan::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// `GET path` over TLS to `addr`, verified as `name`; the raw response.
async fn https_get(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
    name: &str,
    path: &str,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut tls = connector.connect(server_name, tcp).await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.or_else(|error| {
        // rustls reports a peer that closed without close_notify; what was
        // read is still the whole response.
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            Ok(0)
        } else {
            Err(error)
        }
    })?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_shops_certificate_is_verified_against_its_ca() {
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = issue_certificate(certs.path());
    let dir = certs.path().to_owned();
    let mut server = server_with_public(|config| {
        config.http.public_tls_cert = Some(dir.join("fullchain.pem"));
        config.http.public_tls_key = Some(dir.join("privkey.pem"));
    })
    .await;
    kefu_tests::in_process_only("reads the public listener's address from the in-process server");
    let addr = server
        .running
        .as_ref()
        .expect("running")
        .public_addr
        .expect("public");
    let trusting = connector(Some(&ca));

    let response = https_get(&trusting, addr, PUBLIC_HOST, "/healthz")
        .await
        .expect("https");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");
    // The certificate names 127.0.0.1 too.
    let response = https_get(&trusting, addr, "127.0.0.1", "/readyz")
        .await
        .expect("https by address");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Hidden routes stay hidden over TLS.
    let response = https_get(&trusting, addr, PUBLIC_HOST, "/metrics")
        .await
        .expect("https");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    // A client that does not trust the shop's CA refuses the handshake; one
    // that expects another name too.
    let error = https_get(&connector(None), addr, PUBLIC_HOST, "/healthz")
        .await
        .expect_err("unknown CA");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    let error = https_get(&trusting, addr, "other.shop.test", "/healthz")
        .await
        .expect_err("wrong name");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.expect("tcp");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut answer),
    )
    .await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "plain HTTP served");

    // A visitor over wss chats with an agent on loopback.
    let app = server.app(json!({})).await;
    let agent = server.agent("amy").await;
    let visitor = server.visitor(&app).await;
    let mut agent_ws = server.ws(&agent.token, json!({})).await;
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let tls = trusting
        .connect(
            rustls::pki_types::ServerName::try_from(PUBLIC_HOST).expect("name"),
            tcp,
        )
        .await
        .expect("tls");
    let (stream, _) =
        tokio_tungstenite::client_async(format!("wss://{PUBLIC_HOST}/api/v1/ws"), tls)
            .await
            .expect("wss");
    let mut frames = stream;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    frames
        .send(Message::Text(
            json!({"type": "hello", "token": visitor.token})
                .to_string()
                .into(),
        ))
        .await
        .expect("hello");
    frames
        .send(Message::Text(
            json!({"type": "send", "conversation_id": visitor.conversation_id, "client_msg_id": "tls-1", "content": "over wss"})
                .to_string()
                .into(),
        ))
        .await
        .expect("send");
    let mut acked = false;
    while !acked {
        let frame = tokio::time::timeout(kefu_tests::WAIT, frames.next())
            .await
            .expect("frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).expect("json");
            acked = value["type"] == "ack";
        }
    }
    let seen = agent_ws.next_of("message").await;
    assert_eq!(seen["message"]["content"], "over wss", "{seen}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_public_certificate_that_does_not_load_stops_start_up() {
    let certs = tempfile::tempdir().expect("tempdir");
    issue_certificate(certs.path());
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = kefu_server::Config::for_data_dir(data.path());
    config.http.public_bind = Some("127.0.0.1:0".parse().expect("addr"));
    config.http.public_tls_cert = Some(certs.path().join("fullchain.pem"));
    config.http.public_tls_key = Some(certs.path().join("missing.pem"));
    let error = kefu_server::start(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("http.public_tls_key"),
        "{error:#}"
    );
    // A key that is not the certificate's.
    std::fs::write(
        certs.path().join("other.pem"),
        rcgen::KeyPair::generate().expect("key").serialize_pem(),
    )
    .expect("write");
    config.http.public_tls_key = Some(certs.path().join("other.pem"));
    let error = kefu_server::start(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(format!("{error:#}").contains("do not fit"), "{error:#}");
    // Only one of the two.
    config.http.public_tls_cert = None;
    assert!(kefu_server::start(config).await.is_err());
}
