//! The fluent test builder shared by every integration test: a temporary
//! deployment, the real binary run in it, and look-ups in its state.db.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_manyi");

/// A deployment folder under a temp dir.
pub struct Deployment {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

/// What a command did.
pub struct Ran {
    pub out: Output,
    pub what: String,
}

impl Ran {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn success(self) -> Self {
        assert!(
            self.out.status.success(),
            "{} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.out.status.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.out.status.code(),
            Some(code),
            "{}: unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout(),
            self.stderr()
        );
        self
    }
}

impl Deployment {
    pub fn empty() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("deploy");
        std::fs::create_dir_all(&dir).expect("mkdir");
        Deployment { _tmp: tmp, dir }
    }

    /// An existing deployment folder (for example one `manyi demo` wrote).
    pub fn at(dir: &std::path::Path) -> Self {
        Deployment { _tmp: tempfile::tempdir().expect("temp dir"), dir: dir.to_path_buf() }
    }

    /// A small city: one district, one street, three communities, with the
    /// embedded templates, jobs, categories and calendar.
    pub fn small() -> Self {
        let d = Deployment::empty();
        for (rel, text) in manyi::demo::EMBEDDED {
            d.file(rel, text);
        }
        d.file(
            "reference/orgs.csv",
            "code,name,parent,level\n369900,临江市,,city\n369901,江滨区,369900,district\n369901001,滨江街道,369901,street\n\
             369901001001,春晖社区,369901001,community\n369901001002,阳光社区,369901001,community\n369901001003,幸福社区,369901001,community\n",
        );
        d.file(
            "reference/offices.toml",
            "[[office]]\nid = \"leadership\"\nname = \"临江市领导\"\nrole = \"leadership\"\nrecipients = [\"boss@linjiang.gov.cn\"]\n\n\
             [[office]]\nid = \"street-369901001\"\nname = \"滨江街道办事处\"\nrole = \"office\"\nrecipients = [\"jd@linjiang.gov.cn\"]\nscope = { orgs = [\"369901001\"] }\n",
        );
        d
    }

    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        self
    }

    pub fn manyi(&self, args: &[&str]) -> Ran {
        self.manyi_env(args, &[])
    }

    /// Runs manyi with extra environment variables (e.g. the SMTP password).
    pub fn manyi_env(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(&self.dir)
            .env("MANYI_CONFIG", self.dir.join("manyi.toml"))
            .env_remove("MANYI_LOG")
            .envs(env.iter().copied())
            .output()
            .expect("run manyi");
        Ran { out, what: format!("manyi {}", args.join(" ")) }
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.join("data/state.db")).expect("state.db")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).expect(sql)
    }
}

/// Starts a loopback test server from `tests/<script>` and reads the
/// "PORT n" line it prints once it listens. `hint` says what to install if
/// it does not start.
pub fn start_python_server(script: &str, args: &[&str], hint: &str) -> (std::process::Child, u16) {
    use std::io::{BufRead, BufReader};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script);
    let mut child = Command::new("python3")
        .arg(&path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start python3 {}: {e} ({hint})", path.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read port");
    match line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()) {
        Some(port) => (child, port),
        None => {
            let _ = child.kill();
            panic!("tests/{script} did not start ({hint}): {line:?}")
        }
    }
}
