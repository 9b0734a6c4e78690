//! A node's files: a key open to others is refused, a key is never overwritten, and a
//! configuration error names the file, the line and the field.

use std::path::Path;

use agora_node::{NodeFile, read_key, write_key};

fn config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = r#"[node]
id = 0
key_file = "key.toml"
genesis = "genesis.json"
store = "store"

[net]
listen = "127.0.0.1:26600"

[client]
listen = "127.0.0.1:26604"

[consensus]
protocol = "pbft"
view_timeout_ms = 1000
"#;

#[test]
fn a_key_is_written_private_never_overwritten_and_refused_once_others_may_read_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.toml");
    let public = write_key(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(read_key(&path).unwrap().public_key(), &public);
    let again = write_key(&path).unwrap_err().to_string();
    assert!(again.contains("key.toml"), "{again}");
    assert_eq!(read_key(&path).unwrap().public_key(), &public, "the key is unchanged");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = read_key(&path).unwrap_err().to_string();
    assert!(refused.contains("key.toml") && refused.contains("644"), "{refused}");
    std::fs::write(&path, "secret_key = \"zz\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let malformed = read_key(&path).unwrap_err().to_string();
    assert!(malformed.contains("secret_key"), "{malformed}");
}

#[test]
fn a_configuration_error_names_the_file_the_line_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    assert!(NodeFile::read(&config(dir.path(), GOOD)).is_ok());
    let cases = [
        (GOOD.replace("id = 0", "id = \"zero\""), "line 2, field `id`"),
        (
            GOOD.replace("view_timeout_ms = 1000", "view_timeout_ms = 1000\nretries = 3"),
            "line 16, field `retries`",
        ),
        (GOOD.replace("\"127.0.0.1:26600\"", "\"localhost\""), "line 8, field `listen`"),
    ];
    for (text, expected) in cases {
        let path = config(dir.path(), &text);
        let error = NodeFile::read(&path).unwrap_err().to_string();
        assert!(error.contains("config.toml") && error.contains(expected), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }
    let bad_protocol = NodeFile::read(&config(dir.path(), &GOOD.replace("\"pbft\"", "\"raft\"")))
        .unwrap()
        .engine()
        .unwrap_err();
    assert!(bad_protocol.contains("raft"), "{bad_protocol}");
}
