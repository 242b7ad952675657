//! Matching `spec.approvals.toolUse` rules against a tool call (docs/approvals.md, "What a rule
//! catches", is the reference; its examples are this module's test).
//!
//! A rule names a tool (or `*`) and, optionally, a pattern over the call's **subject**
//! ([`subject`]): the command line for `Bash`, the path for file tools (relative to the CLI's
//! working directory when inside it, else absolute), the URL for `WebFetch`, the query for
//! `WebSearch`, else the input as compact JSON.
//!
//! A pattern is a shell-style glob (`*`, `?`, `[…]`; `*` also matches `/` and spaces) that
//! matches when it matches the whole subject. For a `Bash` command line it also matches when it
//! matches one of the line's **commands**, word by word ([`command_matches`]):
//! - the line is read as the shell would split it: into simple commands at `;`, `&`, `&&`,
//!   `|`, `||`, `(`, `)` and newlines, with the commands inside `$(…)`, `` `…` ``, `<(…)` and
//!   `>(…)`, the script of `sh -c`/`bash -c` (also `dash`, `zsh`, `ksh`, `ash`) and the
//!   arguments of `eval` read as commands too; words lose their quotes and backslashes;
//!   redirections (`> file`, `2>&1`, `<<EOF`) are dropped; variables are not expanded;
//! - leading `NAME=value` assignments and the words `!`, `{`, `}`, `if`, `then`, `else`,
//!   `elif`, `fi`, `do`, `done`, `while`, `until`, `time` are skipped;
//! - after a wrapper command ([`WRAPPERS`]: `sudo`, `env`, `xargs`, `find` (its `-exec`), …)
//!   the wrapped command may start at any later word;
//! - the pattern's first word matches the command's name (or its last path component:
//!   `/bin/rm` is `rm`); its option words (`-rf`, `--force`) must all be among the command's
//!   options, in any order or grouping (`-rf` is `-r` and `-f`: `-fr`, `-r -f`, `-Rf` for `rm`,
//!   see [`ALIASES`]); its other words, joined by spaces, must match the command's other words
//!   (options removed), joined by spaces. Options the pattern does not name are ignored.
//!
//! Rules gate what a cooperating CLI asks about; they are not a sandbox (a variable, an alias
//! or a script file hides a command from them).

use std::path::{Component, Path, PathBuf};

use paddock_crds::ToolRule;
use serde_json::Value;

/// Commands that run another command given as their arguments: after one of them, a pattern
/// may match from any later word (`sudo -u root rm -rf x`, `find . -exec rm -rf {} +`).
pub const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "command", "builtin", "exec", "nohup", "nice", "ionice", "timeout", "stdbuf", "setsid",
    "xargs", "find", "watch", "time", "chroot", "su", "runuser", "strace", "flock",
];

/// Shells whose `-c` script is read as commands.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"];

/// Words skipped at the start of a simple command.
const SKIPPED: &[&str] = &[
    "!", "{", "}", "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "time",
];

/// Options that mean the same for a command, as (command, option, canonical option): for
/// `rm` and `cp`, `-R` and `--recursive` are `-r` and `--force` is `-f`; for `git`, `--force`
/// is `-f`; for `chmod`, `chown`, `chgrp`, `--recursive` is `-R`.
pub const ALIASES: &[(&str, &str, &str)] = &[
    ("rm", "-R", "-r"),
    ("rm", "--recursive", "-r"),
    ("rm", "--force", "-f"),
    ("cp", "-R", "-r"),
    ("cp", "--recursive", "-r"),
    ("cp", "--force", "-f"),
    ("git", "--force", "-f"),
    ("chmod", "--recursive", "-R"),
    ("chown", "--recursive", "-R"),
    ("chgrp", "--recursive", "-R"),
];

/// Deepest nesting of `$(…)`, `sh -c` and `eval` read.
const MAX_DEPTH: usize = 8;
/// Most simple commands read from one command line (the rest are not matched word by word;
/// the whole-line glob still applies).
const MAX_COMMANDS: usize = 4096;

/// The part of a call of `tool` with `input` that rules match: the command line for `Bash`,
/// the path for file tools ([`normalize_path`] against `cwd`, the CLI's working directory), the
/// URL for `WebFetch`, the query for `WebSearch`, else the input as compact JSON.
pub fn subject(tool: &str, input: &Value, cwd: &Path) -> String {
    let field = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_string);
    let picked = match tool {
        "Bash" => field("command"),
        "Write" | "Edit" | "MultiEdit" | "Read" | "NotebookEdit" => field("file_path")
            .or_else(|| field("notebook_path"))
            .map(|p| normalize_path(&p, cwd)),
        "WebFetch" => field("url"),
        "WebSearch" => field("query"),
        _ => None,
    };
    picked.unwrap_or_else(|| input.to_string())
}

/// `path` as rules see it: `.` and `..` resolved (by text; symbolic links are not followed),
/// relative to `cwd` when it is `cwd` or inside it (`src/main.rs`, `.`), else absolute
/// (`/etc/passwd`, `/workspace/outside.txt` for `../outside.txt`). So `/*` matches exactly the
/// paths outside the working directory.
pub fn normalize_path(path: &str, cwd: &Path) -> String {
    let joined = cwd.join(path);
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    match out.strip_prefix(cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) if cwd.is_absolute() => rel.to_string_lossy().into_owned(),
        _ => out.to_string_lossy().into_owned(),
    }
}

/// The first rule matching the call of `tool` with `input` (the CLI working in `cwd`), if any.
/// An invalid glob matches only itself, literally.
pub fn matching_rule<'r>(rules: &'r [ToolRule], tool: &str, input: &Value, cwd: &Path) -> Option<&'r ToolRule> {
    let subject = subject(tool, input, cwd);
    // Read the command line once, for every rule.
    let commands = (tool == "Bash").then(|| Commands::read(&subject));
    rules.iter().find(|r| {
        (r.tool == "*" || r.tool == tool)
            && match &r.pattern {
                None => true,
                Some(p) => {
                    glob_match(p, &subject)
                        || commands.as_ref().is_some_and(|cmds| {
                            pattern_words(p).is_some_and(|pw| cmds.iter().any(|c| command_matches(&pw, c)))
                        })
                }
            }
    })
}

/// Whether the glob `pattern` matches all of `text` (`*` matches `/` too); an invalid pattern
/// matches only itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    match glob::Pattern::new(pattern) {
        Ok(g) => g.matches_with(text, opts),
        Err(_) => pattern == text,
    }
}

/// The words of a pattern read as one command, or `None` when it is not one (empty, or
/// several commands).
fn pattern_words(pattern: &str) -> Option<Vec<String>> {
    let mut cmds = Vec::new();
    lex(pattern, 0, &mut cmds);
    match cmds.as_slice() {
        [one] if !one.is_empty() => Some(one.clone()),
        _ => None,
    }
}

/// Most later words of a wrapper command tried as the start of the wrapped command.
const MAX_WRAPPED_STARTS: usize = 64;

/// The commands of a command line that a pattern is tried against ([`Commands::read`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Commands {
    /// The simple commands (their words), nested scripts' included, in reading order.
    simple: Vec<Vec<String>>,
    /// Where a command starts: (index in `simple`, first word).
    starts: Vec<(usize, usize)>,
}

impl Commands {
    /// Reads `line`: each simple command (leading assignments and keywords skipped), and after
    /// a wrapper each of its later words as the start of a command (up to
    /// [`MAX_WRAPPED_STARTS`]); the commands of nested scripts (`sh -c`, `eval`, `$(…)`)
    /// included. Bounded: at most [`MAX_COMMANDS`] commands, nesting [`MAX_DEPTH`] deep.
    pub fn read(line: &str) -> Self {
        let mut c = Commands::default();
        c.collect(line, 0);
        c
    }

    /// The commands, each as its words from its name on.
    pub fn iter(&self) -> impl Iterator<Item = &[String]> {
        self.starts.iter().map(|&(i, s)| &self.simple[i][s..])
    }

    fn collect(&mut self, line: &str, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let mut simple = Vec::new();
        let nested = lex(line, depth, &mut simple);
        for script in nested {
            self.collect(&script, depth + 1);
        }
        for words in simple {
            if self.simple.len() >= MAX_COMMANDS {
                return;
            }
            let start = words
                .iter()
                .position(|w| !SKIPPED.contains(&w.as_str()) && !is_assignment(w))
                .unwrap_or(words.len());
            let Some(first) = words.get(start) else { continue };
            let mut starts = vec![start];
            if WRAPPERS.contains(&base_name(first)) {
                starts.extend(start + 1..words.len().min(start + 1 + MAX_WRAPPED_STARTS));
            }
            let scripts: Vec<String> = starts.iter().filter_map(|&s| nested_script(&words[s..])).collect();
            let index = self.simple.len();
            self.simple.push(words);
            self.starts.extend(starts.into_iter().map(|s| (index, s)));
            for script in scripts {
                self.collect(&script, depth + 1);
            }
        }
    }
}

/// The script a command runs as shell code: `sh -c <script>` (any option cluster holding `c`)
/// or `eval <words…>`.
fn nested_script(cmd: &[String]) -> Option<String> {
    let name = base_name(cmd.first()?);
    if name == "eval" {
        return Some(cmd[1..].join(" "));
    }
    if !SHELLS.contains(&name) {
        return None;
    }
    let mut after_c = false;
    for w in &cmd[1..] {
        if after_c && !w.starts_with('-') {
            return Some(w.clone());
        }
        if w.starts_with('-') && !w.starts_with("--") && w.contains('c') {
            after_c = true;
        }
    }
    None
}

fn is_assignment(w: &str) -> bool {
    let Some((name, _)) = w.split_once('=') else {
        return false;
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The last path component of a command name (`/usr/bin/rm` → `rm`).
fn base_name(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

/// Whether the pattern `pw` (its words) matches the command `cmd` (its words, name first).
pub fn command_matches(pw: &[String], cmd: &[String]) -> bool {
    let (Some(pname), Some(name)) = (pw.first(), cmd.first()) else {
        return false;
    };
    if !glob_match(pname, name) && !glob_match(pname, base_name(name)) {
        return false;
    }
    let base = base_name(name);
    let (want, want_rest) = split_options(&pw[1..], base, true);
    let (have, have_rest) = split_options(&cmd[1..], base, false);
    if !want.iter().all(|o| have.iter().any(|h| glob_match(o, h))) {
        return false;
    }
    glob_match(&want_rest.join(" "), &have_rest.join(" "))
}

/// Splits the words after a command's name into its options (canonical: `-x` per short
/// letter, `--name`, `--name=value`; [`ALIASES`] applied) and its other words. Words after `--`
/// are not options; `-` alone is not one. In a pattern (`pattern`), only plain option words
/// (`-rf`, `--force`, `--output=*`) are options: a word such as `-*` is a glob over a word.
fn split_options(words: &[String], command: &str, pattern: bool) -> (Vec<String>, Vec<String>) {
    let (mut opts, mut rest) = (Vec::new(), Vec::new());
    let mut ended = false;
    let canonical = |o: String| {
        ALIASES
            .iter()
            .find(|(c, from, _)| *c == command && *from == o)
            .map_or(o, |(_, _, to)| to.to_string())
    };
    for w in words {
        if ended || w == "-" || !w.starts_with('-') {
            rest.push(w.clone());
            continue;
        }
        if w == "--" {
            ended = true;
            continue;
        }
        if let Some(long) = w.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or_default();
            let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if pattern && !plain {
                rest.push(w.clone());
            } else if long.contains('=') {
                // `--name=value`: a pattern's is a glob over the whole word; a command's also
                // counts as `--name`.
                opts.push(w.clone());
                if !pattern {
                    opts.push(canonical(format!("--{name}")));
                }
            } else {
                opts.push(canonical(w.clone()));
            }
            continue;
        }
        let letters = &w[1..];
        if pattern && !letters.chars().all(|c| c.is_ascii_alphanumeric()) {
            rest.push(w.clone());
            continue;
        }
        for c in letters.chars() {
            opts.push(canonical(format!("-{c}")));
        }
    }
    (opts, rest)
}

/// Reads `line` as shell code: appends its simple commands (their words, quotes removed,
/// redirections dropped) to `out` and returns the scripts nested in it (`$(…)`, `` `…` ``,
/// `<(…)`, `>(…)`), which the caller reads in turn. A `$(…)` stays in its word as written.
fn lex(line: &str, depth: usize, out: &mut Vec<Vec<String>>) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut nested = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut skip_next = false;
    let mut i = 0;

    let finish_word = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>, skip_next: &mut bool| {
        if *in_word {
            if *skip_next {
                *skip_next = false;
            } else {
                words.push(std::mem::take(word));
            }
        }
        word.clear();
        *in_word = false;
    };
    let finish_command = |words: &mut Vec<String>, out: &mut Vec<Vec<String>>| {
        if !words.is_empty() && out.len() < MAX_COMMANDS {
            out.push(std::mem::take(words));
        }
        words.clear();
    };

    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                match chars.get(i + 1) {
                    Some('\n') => {}
                    Some(&n) => {
                        word.push(n);
                        in_word = true;
                    }
                    None => {}
                }
                i += 2;
                continue;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
                i += 1;
                continue;
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`' | '\n')) => {
                            if chars[i + 1] != '\n' {
                                word.push(chars[i + 1]);
                            }
                            i += 2;
                        }
                        '$' if chars.get(i + 1) == Some(&'(') => {
                            let (inner, end) = balanced(&chars, i + 2);
                            word.extend(&chars[i..end.min(chars.len())]);
                            nested.push(inner);
                            i = end;
                        }
                        '`' => {
                            let (inner, end) = backquoted(&chars, i + 1);
                            word.extend(&chars[i..end.min(chars.len())]);
                            nested.push(inner);
                            i = end;
                        }
                        other => {
                            word.push(other);
                            i += 1;
                        }
                    }
                }
                i += 1;
                continue;
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                let (inner, end) = balanced(&chars, i + 2);
                word.extend(&chars[i..end.min(chars.len())]);
                in_word = true;
                nested.push(inner);
                i = end;
                continue;
            }
            '`' => {
                let (inner, end) = backquoted(&chars, i + 1);
                word.extend(&chars[i..end.min(chars.len())]);
                in_word = true;
                nested.push(inner);
                i = end;
                continue;
            }
            '<' | '>' if chars.get(i + 1) == Some(&'(') => {
                // Process substitution: a command, and a word (a file name) of this one.
                let (inner, end) = balanced(&chars, i + 2);
                word.extend(&chars[i..end.min(chars.len())]);
                in_word = true;
                nested.push(inner);
                i = end;
                continue;
            }
            '<' | '>' => {
                // A redirection: an fd number just before it is part of it, and the next word
                // is its target.
                if in_word && !word.is_empty() && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                finish_word(&mut word, &mut in_word, &mut words, &mut skip_next);
                i += 1;
                while i < chars.len() && matches!(chars[i], '<' | '>' | '&' | '|' | '-') {
                    i += 1;
                }
                skip_next = true;
                continue;
            }
            '&' if chars.get(i + 1) == Some(&'>') && !in_word => {
                // `&>file`, `&>>file`: a redirection.
                i += 2;
                while i < chars.len() && chars[i] == '>' {
                    i += 1;
                }
                skip_next = true;
                continue;
            }
            ';' | '&' | '|' | '(' | ')' | '\n' => {
                finish_word(&mut word, &mut in_word, &mut words, &mut skip_next);
                skip_next = false;
                finish_command(&mut words, out);
                i += 1;
                continue;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            c if c.is_whitespace() => {
                finish_word(&mut word, &mut in_word, &mut words, &mut skip_next);
                i += 1;
                continue;
            }
            other => {
                word.push(other);
                in_word = true;
                i += 1;
            }
        }
    }
    finish_word(&mut word, &mut in_word, &mut words, &mut skip_next);
    finish_command(&mut words, out);
    if depth >= MAX_DEPTH {
        nested.clear();
    }
    nested
}

/// The text up to the `)` that closes a `(` opened just before `start` (quotes and nested
/// parentheses respected), and the index after that `)`.
fn balanced(chars: &[char], start: usize) -> (String, usize) {
    let mut depth = 1;
    let mut i = start;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => i += 1,
            (Some(_), _) => {}
            (None, '\\') => i += 1,
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return (chars[start..i].iter().collect(), i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    (chars[start.min(chars.len())..].iter().collect(), chars.len())
}

/// The text up to the next unescaped backquote from `start`, and the index after it.
fn backquoted(chars: &[char], start: usize) -> (String, usize) {
    let mut i = start;
    let mut inner = String::new();
    while i < chars.len() && chars[i] != '`' {
        if chars[i] == '\\' && i + 1 < chars.len() {
            inner.push(chars[i + 1]);
            i += 2;
            continue;
        }
        inner.push(chars[i]);
        i += 1;
    }
    (inner, i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn read(line: &str) -> Vec<Vec<String>> {
        Commands::read(line).iter().map(<[String]>::to_vec).collect()
    }

    #[test]
    fn lines_split_into_commands_as_the_shell_does() {
        assert_eq!(
            read("cd 'my dir' && rm -rf \"a b\" 2>/dev/null; echo ok | tee log >out"),
            vec![
                words(&["cd", "my dir"]),
                words(&["rm", "-rf", "a b"]),
                words(&["echo", "ok"]),
                words(&["tee", "log"]),
            ]
        );
        assert_eq!(
            read("FOO=1 BAR=2 \\rm -rf x 2>&1 # rm -rf /"),
            vec![words(&["rm", "-rf", "x"])]
        );
        // Nested scripts are commands too.
        let nested = read("echo $(curl -s https://x) `id`; bash -lc 'rm -rf y'; eval \"git push\"");
        for want in [
            words(&["curl", "-s", "https://x"]),
            words(&["id"]),
            words(&["rm", "-rf", "y"]),
            words(&["git", "push"]),
        ] {
            assert!(nested.contains(&want), "{want:?} in {nested:?}");
        }
        // After a wrapper, the wrapped command is tried from every later word.
        let wrapped = read("sudo -u root nice -n 5 rm -rf /var");
        assert!(wrapped.contains(&words(&["rm", "-rf", "/var"])), "{wrapped:?}");
        // Keywords and groups.
        let compound = read("for f in a b; do rm -rf $f; done; { rm -r -f z; }");
        assert!(compound.contains(&words(&["rm", "-rf", "$f"])), "{compound:?}");
        assert!(compound.contains(&words(&["rm", "-r", "-f", "z"])), "{compound:?}");
        // Unbalanced or odd input never panics.
        for odd in [
            "$(", "`", "\"", "'", "\\", "a >", "((((", "$(a $(b", "&>", "<(", "2>&", "é$(é", "`é",
        ] {
            let _ = read(odd);
        }
    }

    /// Arbitrary lines of shell punctuation (a fixed pseudo-random sequence) never panic, in
    /// reading or in matching.
    #[test]
    fn odd_lines_never_panic() {
        let alphabet: Vec<char> = "ab -\\'\"`$(){};&|<>#=*?[]\n\té/".chars().collect();
        let pattern = pattern_words("rm -rf *").unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let line: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 48)) as usize + i * 7) % alphabet.len()])
                .collect();
            for cmd in Commands::read(&line).iter() {
                let _ = command_matches(&pattern, cmd);
            }
            let _ = pattern_words(&line);
        }
    }

    #[test]
    fn reading_is_bounded() {
        // Many commands, deep nesting, a wrapper with many words: bounded output.
        let many = "true;".repeat(MAX_COMMANDS * 2);
        assert!(Commands::read(&many).iter().count() <= MAX_COMMANDS);
        let deep = format!("{}rm -rf x{}", "$(".repeat(50), ")".repeat(50));
        let _ = Commands::read(&deep);
        let long = format!("xargs {}", "a ".repeat(100_000));
        assert!(Commands::read(&long).iter().count() <= 1 + MAX_WRAPPED_STARTS);
    }

    #[test]
    fn options_are_matched_as_a_set() {
        let p = |s: &str| pattern_words(s).unwrap();
        let c = |s: &str| pattern_words(s).unwrap();
        assert!(command_matches(&p("rm -rf *"), &c("rm -f -r x")));
        assert!(command_matches(&p("rm -rf *"), &c("rm --recursive --force x")));
        assert!(!command_matches(&p("rm -rf *"), &c("rm -r x")));
        assert!(command_matches(&p("git push --force *"), &c("git push -f origin")));
        assert!(!command_matches(&p("git push --force *"), &c("git push origin")));
        assert!(command_matches(
            &p("curl --output=* *"),
            &c("curl --output=x.bin https://x")
        ));
        assert!(!command_matches(
            &p("curl --output=/tmp/* *"),
            &c("curl --output=x.bin https://x")
        ));
        // Extra arguments need the pattern's `*`; extra options do not.
        assert!(command_matches(&p("git push"), &c("git push --force")));
        assert!(!command_matches(&p("git push"), &c("git push origin")));
        // A command name with a path matches by its last component, or whole.
        assert!(command_matches(&p("rm -rf *"), &c("/usr/bin/rm -rf x")));
        assert!(command_matches(&p("./deploy.sh *"), &c("./deploy.sh prod")));
    }

    /// The examples of docs/approvals.md ("What a rule catches"), read from the document
    /// itself: each rule catches every call of its "catches" cell and none of its "lets
    /// through" cell; and every rule of the document's sample AgentRun is in that table.
    #[test]
    fn the_documented_examples_hold() {
        let doc = include_str!("../../docs/approvals.md");
        let cwd = Path::new("/workspace/work");
        // Cells split at `|` not escaped as `\|`; code spans are the examples.
        let cells = |line: &str| -> Vec<String> {
            let mut out = vec![String::new()];
            let mut prev = ' ';
            for ch in line.trim().trim_start_matches('|').chars() {
                if ch == '|' && prev != '\\' {
                    out.push(String::new());
                } else {
                    out.last_mut().unwrap().push(ch);
                }
                prev = ch;
            }
            out
        };
        let spans = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(|s| s.replace("\\|", "|"))
                .collect()
        };
        let header = "| rule | catches | lets through |";
        let start = doc.find(header).expect("the examples table in docs/approvals.md");
        let mut rules_seen = Vec::new();
        let mut checked = 0;
        for line in doc[start..].lines().skip(2).take_while(|l| l.starts_with('|')) {
            let row = cells(line);
            assert!(row.len() >= 3, "row {line:?}");
            let rule_text = spans(&row[0]).pop().unwrap_or_default();
            let rule: ToolRule = serde_yaml::from_str(&rule_text).unwrap_or_else(|e| panic!("{rule_text}: {e}"));
            let input = |s: &str| match rule.tool.as_str() {
                "Bash" => json!({"command": s}),
                "WebFetch" => json!({"url": s}),
                "WebSearch" => json!({"query": s}),
                _ => json!({"file_path": s}),
            };
            let rules = std::slice::from_ref(&rule);
            let catches = spans(&row[1]);
            assert!(!catches.is_empty(), "{rule_text}: no example it catches");
            for call in catches {
                assert!(
                    matching_rule(rules, &rule.tool, &input(&call), cwd).is_some(),
                    "{rule_text} should catch {call:?}"
                );
                checked += 1;
            }
            for call in spans(&row[2]) {
                assert!(
                    matching_rule(rules, &rule.tool, &input(&call), cwd).is_none(),
                    "{rule_text} should let {call:?} through"
                );
                checked += 1;
            }
            rules_seen.push(rule);
        }
        assert!(checked >= 40, "only {checked} examples read");
        // The sample AgentRun's rules are all in the table.
        let yaml = doc
            .split("```yaml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("the sample manifest");
        let run: paddock_crds::AgentRun = serde_yaml::from_str(yaml).expect("the sample is an AgentRun");
        let sample = run
            .spec
            .approvals
            .and_then(|a| a.tool_use)
            .expect("toolUse rules")
            .rules;
        assert!(!sample.is_empty());
        for r in sample {
            assert!(
                rules_seen.contains(&r),
                "the sample's rule {r:?} has no examples in the table"
            );
        }
    }

    #[test]
    fn file_paths_are_relative_inside_the_working_directory() {
        let cwd = Path::new("/workspace/work");
        for (path, want) in [
            ("src/main.rs", "src/main.rs"),
            ("./src/../notes.txt", "notes.txt"),
            ("/workspace/work/src/main.rs", "src/main.rs"),
            ("/workspace/work", "."),
            ("/workspace/workshop/x", "/workspace/workshop/x"),
            ("../outside.txt", "/workspace/outside.txt"),
            ("/workspace/work/../../etc/passwd", "/etc/passwd"),
            ("/etc/passwd", "/etc/passwd"),
        ] {
            assert_eq!(normalize_path(path, cwd), want, "{path}");
        }
        let write = |p: &str| json!({"file_path": p, "content": "x"});
        let rules = vec![ToolRule {
            tool: "Write".into(),
            pattern: Some("/*".into()),
        }];
        assert!(matching_rule(&rules, "Write", &write("/tmp/x"), cwd).is_some());
        assert!(matching_rule(&rules, "Write", &write("/workspace/work/a.txt"), cwd).is_none());
        assert!(matching_rule(&rules, "Edit", &write("/tmp/x"), cwd).is_none());
    }
}
