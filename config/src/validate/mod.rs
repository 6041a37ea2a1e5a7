//! Raw config → typed model. Every rule lives here; every problem is collected, none stops the others.

mod cluster;
mod ctx;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

pub use ctx::EnvLookup;
use ctx::{invalid, Ctx, Scope};

use crate::error::{Problem, ProblemKind};
use crate::model::*;
use crate::raw::*;

/// Checks a raw config and builds the typed model, or returns every problem found.
pub fn validate(raw: &RawConfig, env: EnvLookup<'_>, base_dir: &Path) -> Result<Config, Vec<Problem>> {
    let mut ctx = Ctx::new(env, base_dir);
    let root = Scope::default();
    let config = Config {
        admin: admin(&mut ctx, &root.table("admin"), raw.admin.as_ref()),
        http: http(&mut ctx, &root.table("http"), raw.http.as_ref()),
        logging: logging(&mut ctx, &root.table("logging"), raw.logging.as_ref()),
        coordination: coordination(&mut ctx, &root.table("coordination"), raw.coordination.as_ref()),
        vip: raw.vip.as_ref().map(|v| vip(&mut ctx, &root.table("vip"), v)),
        runtime: Runtime {
            worker_threads: ctx.int(
                &root.table("runtime"),
                "worker_threads",
                raw.runtime.as_ref().and_then(|r| r.worker_threads),
                0,
                0,
                1024,
            ),
        },
        cluster: cluster::clusters(&mut ctx, &root, &raw.cluster),
    };
    listen_conflicts(&mut ctx, &config);
    if ctx.problems.is_empty() {
        Ok(config)
    } else {
        Err(ctx.problems)
    }
}

fn admin(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&RawAdmin>) -> Admin {
    let default = RawAdmin::default();
    let raw = raw.unwrap_or(&default);
    Admin {
        listen: ctx.socket(s, "listen", raw.listen.as_ref(), "127.0.0.1:9898"),
        user: ctx.string(s, "user", raw.user.as_ref()).unwrap_or_else(|| "admin".into()),
        password: ctx.secret(s, raw.password.as_ref(), raw.password_file.as_ref()),
    }
}

fn http(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&RawHttp>) -> Http {
    Http { listen: ctx.socket(s, "listen", raw.and_then(|r| r.listen.as_ref()), "127.0.0.1:9899") }
}

fn logging(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&RawLogging>) -> Logging {
    use LogLevel::*;
    let levels = [("error", Error), ("warn", Warn), ("info", Info), ("debug", Debug), ("trace", Trace)];
    let formats = [("human", LogFormat::Human), ("json", LogFormat::Json)];
    Logging {
        level: ctx.choice(s, "level", raw.and_then(|r| r.level.as_ref()), Info, &levels),
        format: ctx.choice(s, "format", raw.and_then(|r| r.format.as_ref()), LogFormat::Human, &formats),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Local,
    Etcd,
}

fn coordination(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&RawCoordination>) -> Coordination {
    let Some(raw) = raw else { return Coordination::Local };
    let mode = ctx.choice(s, "mode", raw.mode.as_ref(), Mode::Local, &[("local", Mode::Local), ("etcd", Mode::Etcd)]);
    if mode == Mode::Local {
        return Coordination::Local;
    }
    let endpoints: Vec<String> =
        raw.endpoints.iter().flatten().filter_map(|e| ctx.string(s, "endpoints", Some(e))).collect();
    if endpoints.is_empty() {
        ctx.report(s, "mode", ProblemKind::Requires { what: "at least one entry in endpoints".into() });
    }
    for e in &endpoints {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            ctx.report(s, "endpoints", invalid(e, "a URL such as \"http://127.0.0.1:2379\""));
        }
    }
    if raw.node_name.is_none() {
        ctx.report(s, "mode", ProblemKind::Requires { what: "node_name".into() });
    }
    Coordination::Etcd(Etcd {
        endpoints,
        node_name: ctx.string(s, "node_name", raw.node_name.as_ref()).unwrap_or_default(),
        ttl: ctx.duration(s, "ttl", raw.ttl.as_ref(), Duration::from_secs(10)),
        prefix: ctx.string(s, "prefix", raw.prefix.as_ref()).unwrap_or_else(|| "/hapool".into()),
    })
}

fn vip(ctx: &mut Ctx<'_>, s: &Scope, raw: &RawVip) -> Vip {
    let text = ctx.required(s, "address", raw.address.as_ref());
    let address = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => {
            if !text.is_empty() {
                ctx.report(s, "address", invalid(&text, "an IP address such as \"10.0.0.100\""));
            }
            IpAddr::from([0, 0, 0, 0])
        }
    };
    let follows = [("leader", VipFollows::Leader), ("primary", VipFollows::Primary)];
    Vip {
        address,
        interface: ctx.required(s, "interface", raw.interface.as_ref()),
        follows: ctx.choice(s, "follows", raw.follows.as_ref(), VipFollows::Leader, &follows),
        gratuitous_arp: raw.gratuitous_arp.unwrap_or(true),
    }
}

/// Two listeners on one address would fail at bind time; say so now, naming both.
fn listen_conflicts(ctx: &mut Ctx<'_>, config: &Config) {
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    let root = Scope::default();
    let mut check = |ctx: &mut Ctx<'_>, scope: Scope, addr: SocketAddr, owner: String| {
        if addr.port() == 0 {
            return;
        }
        match seen.get(&addr) {
            Some(other) => {
                ctx.report(&scope, "listen", ProblemKind::Conflict { value: addr.to_string(), other: other.clone() })
            }
            None => {
                seen.insert(addr, owner);
            }
        }
    };
    check(ctx, root.table("admin"), config.admin.listen, "admin.listen".into());
    check(ctx, root.table("http"), config.http.listen, "http.listen".into());
    for (i, c) in config.cluster.iter().enumerate() {
        let scope = root.element("cluster", i, Some(&c.name));
        check(ctx, scope, c.listen, format!("cluster {:?}", c.name));
    }
}
