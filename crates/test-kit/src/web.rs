//! The web UI without a browser: a client that reports redirects, the
//! login form's hidden fields and cookies, and logging in through it.

/// A client that reports redirects instead of following them.
pub fn browser() -> reqwest::Client {
    berth_net::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// The value of the hidden input `name` of a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').expect("a closing quote")].to_owned()
}

/// The `name=value` of the cookie `name` that `resp` sets, and the whole
/// `Set-Cookie` header (for its flags).
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> (String, String) {
    let header = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"))
        .to_owned();
    let pair = header.split(';').next().unwrap_or_default().to_owned();
    (pair, header)
}

/// The `name=value` of the cookie `name` that `resp` sets.
pub fn cookie(resp: &reqwest::Response, name: &str) -> String {
    set_cookie(resp, name).0
}

/// Opens the login form at `url` (`.../ui/login`, maybe with `?next=`):
/// the form's cookie and the page.
pub async fn login_form(http: &reqwest::Client, url: &str) -> (String, String) {
    let page = http.get(url).send().await.expect("the login form");
    assert_eq!(page.status(), 200, "the login form at {url}");
    let form_cookie = cookie(&page, "berth_login");
    (form_cookie, page.text().await.expect("the form's page"))
}

/// Opens the login form at `base` + `/ui/login`, and submits it as `user`
/// with `next` as its hidden field: the answer (303 and a session cookie
/// when the login worked).
pub async fn log_in(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
    next: &str,
) -> reqwest::Response {
    let form = login_form(http, &format!("{base}/ui/login")).await;
    submit_login(http, base, &form, user, password, next).await
}

/// Submits the login form opened as `form` (its cookie and page, from
/// [`login_form`]) to `base` + `/ui/login` as `user`, with `next` as its
/// hidden field: the answer (303 and a session cookie when the login
/// worked).
pub async fn submit_login(
    http: &reqwest::Client,
    base: &str,
    form: &(String, String),
    user: &str,
    password: &str,
    next: &str,
) -> reqwest::Response {
    let (form_cookie, page) = form;
    let csrf = hidden(page, "csrf");
    http.post(format!("{base}/ui/login"))
        .header("Cookie", form_cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("next", next),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .expect("an answer to the login")
}
