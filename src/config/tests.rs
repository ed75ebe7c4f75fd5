//! Parse tests on `&str` sources, and the shipped example.

#[cfg(test)]
mod parsing {
    use super::super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/wssgate/wssgate.toml"))
    }

    const ROUTE: &str = r#"
[[route]]
name = "orders"
path = "/orders"
upstream = "http://127.0.0.1:9000/orders"
alias = "orders-receiver"
"#;

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse(ROUTE).unwrap();
        assert_eq!(c.proxy.max_body, 16 << 20);
        assert_eq!(c.proxy.stream_threshold, 1 << 20);
        assert_eq!(c.proxy.upstream_timeout, Duration::from_secs(60));
        assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.keystore.dir, Path::new("/etc/wssgate/keystore"));
        assert_eq!(c.keystore.retention_days, 90);
        let r = &c.routes[0];
        assert_eq!(r.algorithms, Profile::Default.algorithms());
        assert_eq!(r.on_pause, OnPause::Hold);
        assert_eq!(r.hold_max, 1000);
        assert!(r.must_understand);
    }

    #[test]
    fn listener_limits_defaults_and_overrides() {
        let c = parse(ROUTE).unwrap();
        let secs = Duration::from_secs;
        assert_eq!(
            c.proxy.listener,
            ListenerLimits {
                header_timeout: secs(10),
                request_timeout: secs(120),
                max_connections: None
            }
        );
        assert_eq!(c.admin.listener.max_connections, Some(16));
        assert_eq!(c.admin.listener.request_timeout, secs(30));
        assert!(c.probe.is_none());
        let text = format!(
            "[proxy]\nheader_timeout = \"2s\"\nrequest_timeout = \"1m\"\nmax_connections = 500\n\
             [admin]\nmax_connections = 4\n[probe]\nlisten = \"0.0.0.0:9091\"\nheader_timeout = \"3s\"\n{ROUTE}"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.proxy.listener.header_timeout, secs(2));
        assert_eq!(c.proxy.listener.request_timeout, secs(60));
        assert_eq!(c.proxy.listener.max_connections, Some(500));
        assert_eq!(c.admin.listener.max_connections, Some(4));
        let probe = c.probe.unwrap();
        assert_eq!(probe.listener.header_timeout, secs(3));
        assert_eq!(probe.listener.max_connections, Some(8));
        let e = parse(&format!("[admin]\nheader_timeout = \"0s\"\n{ROUTE}")).unwrap_err();
        assert_eq!(e.key, "admin.header_timeout");
        let e = parse(&format!("[proxy]\nmax_connections = 0\n{ROUTE}")).unwrap_err();
        assert_eq!(e.key, "proxy.max_connections");
        let e = parse(&format!(
            "[probe]\nlisten = \"0.0.0.0:9091\"\nrequest_timeout = \"1s\"\n{ROUTE}"
        ))
        .unwrap_err();
        assert!(e.message.contains("request_timeout"), "{e}");
    }

    #[test]
    fn explicit_algorithms_override_the_profile() {
        let text = format!("{ROUTE}profile = \"wcf-basic256\"\ndata_encryption = \"aes128-gcm\"\n");
        let r = &parse(&text).unwrap().routes[0];
        assert_eq!(r.algorithms.key_identifier, KeyIdentifier::Thumbprint);
        assert_eq!(r.algorithms.data_encryption, DataEncryption::Aes128Gcm);
    }

    #[test]
    fn issuer_name_format_policy_profiles_and_mgf1p_digest() {
        let r = &parse(&format!("{ROUTE}issuer_name_format = \"wcf\"\n"))
            .unwrap()
            .routes[0];
        assert_eq!(r.algorithms.issuer_name_format, IssuerNameFormat::Wcf);
        assert_eq!(r.algorithms.key_identifier, KeyIdentifier::IssuerSerial);
        let text =
            format!("{ROUTE}profile = \"wcf-basic128\"\nkey_identifier = \"issuer-serial\"\n");
        let r = &parse(&text).unwrap().routes[0];
        assert_eq!(r.algorithms.issuer_name_format, IssuerNameFormat::Wcf);
        let text = format!("{ROUTE}profile = \"wcf-basic128\"\nissuer_name_format = \"rfc2253\"\n");
        let r = &parse(&text).unwrap().routes[0];
        assert_eq!(r.algorithms.issuer_name_format, IssuerNameFormat::Rfc2253);

        let text = format!("{ROUTE}profile = \"basic256sha256\"\noaep_digest = \"sha256\"\n");
        let r = &parse(&text).unwrap().routes[0];
        assert_eq!(r.algorithms.key_transport, KeyTransport::RsaOaepMgf1p);
        assert_eq!(r.algorithms.oaep_digest, OaepDigest::Sha256);
        let r = &parse(&format!("{ROUTE}profile = \"basic128\"\n"))
            .unwrap()
            .routes[0];
        assert_eq!(r.algorithms.data_encryption, DataEncryption::Aes128Cbc);

        let e = parse(&format!("{ROUTE}issuer_name_format = \"rfc1779\"\n")).unwrap_err();
        assert_eq!(e.key, "route.orders.issuer_name_format");
        assert!(e.message.contains("wcf"), "{e}");
        let e = parse(&format!("{ROUTE}profile = \"basic192\"\n")).unwrap_err();
        assert!(e.message.contains("basic256sha256"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse("[proxy]\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(
            e.to_string().starts_with("/etc/wssgate/wssgate.toml:3: "),
            "{e}"
        );
        assert!(e.to_string().contains("bogus"), "{e}");

        let e = parse("[keystore]\nretention_days = 30\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(2), "keystore.retention_days")
        );
        assert!(e.message.contains("90"));

        let e = parse(&format!("{ROUTE}key_transport = \"rsa-1_5\"\n")).unwrap_err();
        assert_eq!(e.key, "route.orders.key_transport");
        assert!(e.message.contains("allow_legacy"), "{e}");

        let e = parse(&format!("{ROUTE}mode = \"plain\"\n")).unwrap_err();
        assert_eq!(e.key, "route.orders.mode");
        assert!(e.message.contains("pass-through"), "{e}");

        let e = parse(&format!("{ROUTE}hold_timeout = \"soon\"\n")).unwrap_err();
        assert_eq!(e.key, "route.orders.hold_timeout");
        assert_eq!(e.line, Some(7));

        let e = parse("[admin]\nlisten = \"0.0.0.0:9090\"\n").unwrap_err();
        assert!(e.message.contains("requires tls"), "{e}");

        let e = parse(&format!("{ROUTE}{ROUTE}")).unwrap_err();
        assert!(e.message.contains("twice"), "{e}");

        let e = parse("[proxy]\nmax_body = \"lots\"\n").unwrap_err();
        assert_eq!(e.key, "proxy.max_body");

        let e = parse(&ROUTE.replace("orders-receiver", "../etc/passwd")).unwrap_err();
        assert_eq!(e.key, "route.orders.alias");

        let e = parse(&ROUTE.replace("http://127.0.0.1:9000/orders", "ftp://x/")).unwrap_err();
        assert_eq!(e.key, "route.orders.upstream");
    }

    #[test]
    fn sizes_and_roles() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1TB").is_err());
        assert!(Role::Admin.allows(Role::Keys));
        assert!(Role::Keys.allows(Role::Read));
        assert!(!Role::Keys.allows(Role::Operator));
        assert!(!Role::Read.allows(Role::Operator));
        assert!(is_valid_alias("orders-receiver.v2"));
        assert!(!is_valid_alias(".hidden") && !is_valid_alias("a/b") && !is_valid_alias(""));
    }
    #[test]
    fn xml_limits_have_their_defaults_and_routes_override_them() {
        let c = parse(ROUTE).unwrap();
        let defaults = Limits {
            max_bytes: Some(16 << 20),
            ..Limits::default()
        };
        assert_eq!(c.proxy.xml_limits, defaults);
        assert_eq!(c.routes[0].xml_limits, defaults);
        assert_eq!(defaults.max_attributes_per_element, 256);
        assert_eq!(defaults.max_name_length, 1024);
        assert_eq!(defaults.max_namespace_declarations, 1024);
        assert_eq!(defaults.max_text_length, None);
        assert_eq!(defaults.max_elements, None);

        let text = format!(
            "[proxy]\nmax_depth = 100\n[proxy.xml_limits]\nmax_name_length = 64\nmax_text_length = \"1KiB\"\n{ROUTE}xml_limits = {{ max_elements = 10, max_text_length = 512, max_depth = 50 }}\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.proxy.xml_limits.max_depth, 100);
        assert_eq!(c.proxy.xml_limits.max_name_length, 64);
        assert_eq!(c.proxy.xml_limits.max_text_length, Some(1024));
        let r = c.routes[0].xml_limits;
        assert_eq!(
            (
                r.max_depth,
                r.max_name_length,
                r.max_text_length,
                r.max_elements
            ),
            (50, 64, Some(512), Some(10))
        );
    }

    #[test]
    fn xml_limits_refuse_unknown_keys_and_bad_values() {
        let e = parse(&format!("[proxy.xml_limits]\nmax_entities = 1\n{ROUTE}")).unwrap_err();
        assert!(e.message.contains("max_entities"), "{e}");
        let e = parse(&format!(
            "{ROUTE}xml_limits = {{ max_attributes_per_element = 0 }}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.key, "route.orders.xml_limits.max_attributes_per_element",
            "{e}"
        );
        let e = parse(&format!(
            "[proxy.xml_limits]\nmax_text_length = \"lots\"\n{ROUTE}"
        ))
        .unwrap_err();
        assert_eq!(e.key, "proxy.xml_limits.max_text_length", "{e}");
    }

    const DECRYPT: &str = r#"
[[route]]
name = "inbound"
path = "/inbound"
upstream = "http://127.0.0.1:9000/service"
mode = "decrypt"
ring = "tenant"
"#;

    #[test]
    fn decrypt_routes_name_their_ring_and_require_encryption_by_default() {
        let c = parse(DECRYPT).unwrap();
        let r = &c.routes[0];
        assert_eq!(r.mode, RouteMode::Decrypt);
        assert_eq!(r.ring.as_deref(), Some("tenant"));
        assert_eq!(r.alias, "tenant");
        assert!(r.require_encryption && !r.allow_legacy);
        assert_eq!(r.response, ResponseMode::Pass);
        assert_eq!(c.keystore.private_dir, Path::new("/etc/wssgate/private"));
        assert_eq!(c.rings().into_iter().collect::<Vec<_>>(), vec!["tenant"]);
        assert_eq!(
            c.routes_for_alias("tenant").count(),
            0,
            "no certificate is loaded for a ring"
        );
        let r = &parse(&format!(
            "{DECRYPT}require_encryption = false\nallow_legacy = true\n"
        ))
        .unwrap()
        .routes[0];
        assert!(!r.require_encryption && r.allow_legacy);
        let c = parse("[keystore]\nprivate_dir = \"keys\"\n").unwrap();
        assert_eq!(c.keystore.private_dir, Path::new("/etc/wssgate/keys"));
    }

    #[test]
    fn encrypt_routes_may_decrypt_answers_with_a_ring() {
        let c = parse(&format!(
            "{ROUTE}response = \"decrypt\"\nresponse_ring = \"tenant\"\n"
        ))
        .unwrap();
        let r = &c.routes[0];
        assert_eq!(
            (r.response, r.response_ring.as_deref()),
            (ResponseMode::Decrypt, Some("tenant"))
        );
        assert_eq!(c.rings().into_iter().collect::<Vec<_>>(), vec!["tenant"]);
    }

    #[test]
    fn contradictory_decrypt_settings_are_refused_with_their_key() {
        let no_ring = DECRYPT.replace("ring = \"tenant\"\n", "");
        for (text, key, says) in [
            (no_ring.clone(), "route.inbound.ring", "needs ring"),
            (
                format!("{no_ring}alias = \"x\"\n"),
                "route.inbound.alias",
                "ring =",
            ),
            (
                format!("{DECRYPT}response = \"decrypt\"\n"),
                "route.inbound.response",
                "unchanged",
            ),
            (
                DECRYPT.replace("\"tenant\"", "\"../etc\""),
                "route.inbound.ring",
                "not a valid alias",
            ),
            (
                DECRYPT.replace("\"decrypt\"", "\"decipher\""),
                "route.inbound.mode",
                "decrypt",
            ),
            (
                format!("{ROUTE}ring = \"tenant\"\n"),
                "route.orders.ring",
                "response_ring",
            ),
            (
                format!("{ROUTE}require_encryption = true\n"),
                "route.orders.require_encryption",
                "decrypt",
            ),
            (
                format!("{ROUTE}response = \"decrypt\"\n"),
                "route.orders.response_ring",
                "needs response_ring",
            ),
            (
                format!("{ROUTE}response_ring = \"tenant\"\n"),
                "route.orders.response_ring",
                "response = \"decrypt\"",
            ),
            (
                format!("{ROUTE}response = \"encrypt\"\n"),
                "route.orders.response",
                "pass or decrypt",
            ),
            (
                ROUTE.replace("alias = \"orders-receiver\"\n", ""),
                "route.orders.alias",
                "missing",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.message.contains(says), "{text}: {e}");
            assert!(e.line.is_some(), "{e}");
        }
    }
}

#[cfg(test)]
mod shipped_example {
    use super::super::*;

    #[test]
    fn the_kubernetes_configmap_holds_a_valid_configuration() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml");
        let yaml = std::fs::read_to_string(path).unwrap();
        let start = yaml.find("wssgate.toml: |").unwrap();
        // The block scalar: the lines indented under the key.
        let toml: String = yaml[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&toml, Path::new("/etc/wssgate/config/wssgate.toml")).unwrap();
        assert!(config.keystore.watch);
        assert_eq!(config.keystore.dir, Path::new("/etc/wssgate/keystore"));
        // The buffers the connection cap allows fit in half the pod's memory limit.
        let connections = config.proxy.listener.max_connections.unwrap();
        let held: usize = config.routes.iter().map(|r| r.hold_max).sum();
        assert!(
            held <= connections,
            "hold_max {held} > max_connections {connections}"
        );
        let set = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/statefulset.yaml"),
        )
        .unwrap();
        let limit = set[set.find("limits:").unwrap()..]
            .lines()
            .find_map(|l| l.trim().strip_prefix("memory: "))
            .unwrap();
        let limit = parse::parse_size(limit.trim_end_matches('i')).unwrap();
        let buffered = connections as u64 * config.proxy.stream_threshold;
        assert!(
            buffered <= limit / 2,
            "{buffered} buffered > half of {limit}"
        );
    }

    #[test]
    fn the_configuration_is_found_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let (local, installed) = (dir.path().join("local.toml"), dir.path().join("etc.toml"));
        let among = |explicit: Option<&Path>| {
            resolve_path_among(explicit, &[local.as_path(), installed.as_path()])
        };
        assert_eq!(among(None), local, "neither exists: the first is named");
        std::fs::write(&installed, "").unwrap();
        assert_eq!(among(None), installed);
        std::fs::write(&local, "").unwrap();
        assert_eq!(among(None), local, "the current directory first");
        assert_eq!(among(Some(Path::new("x.toml"))), Path::new("x.toml"));
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_PATH);
        let config = Config::load(&path).unwrap();
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.admin.tokens[0].role, Role::Admin);
    }
}
