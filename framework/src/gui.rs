//! A service area's GUI plugin: the files its own units serve under `/gui/…`, so each team
//! ships its part of the browser GUI with its SA (versioned and deployed with it) and no GUI
//! monolith grows.
//!
//! The files are embedded in the SA's crate at compile time (`include_str!`), so a unit needs
//! nothing at run time beyond its binary. The framework adds one file of its own,
//! `manifest.json`, which the GUI shell reads: the SA's name, the plugin's title (English and
//! German), its entry module (relative to the manifest), the interface versions the plugin
//! needs, and the versions the SA serves now (not retired), so the shell can refuse a plugin
//! whose SA no longer serves what it needs.

use crate::interface::InterfaceVersion;

/// One SA's plugin: its files and what the manifest says about it.
///
/// ```
/// use hiscale::gui::Gui;
/// use hiscale::ServiceArea;
/// let sa = ServiceArea::new("shop").gui(
///     Gui::new("Shop", "Laden")
///         .file("plugin.js", "export function mount() {}")
///         .needs(&[1]),
/// );
/// assert_eq!(sa.gui_plugin().map(Gui::entry), Some("plugin.js"));
/// ```
#[derive(Debug, Clone)]
pub struct Gui {
    title_en: &'static str,
    title_de: &'static str,
    entry: &'static str,
    needs: Vec<InterfaceVersion>,
    public: bool,
    files: Vec<GuiFile>,
}

/// One embedded file of a plugin.
#[derive(Debug, Clone)]
pub struct GuiFile {
    pub path: &'static str,
    pub body: &'static str,
}

/// Files a plugin may hold at most: a plugin is a handful of modules, and the bound keeps a
/// mistaken `file` loop from growing the unit's memory.
const MAX_FILES: usize = 32;

impl Gui {
    /// A plugin titled `title_en` (German: `title_de`) whose entry module is `plugin.js`.
    pub fn new(title_en: &'static str, title_de: &'static str) -> Self {
        Self {
            title_en,
            title_de,
            entry: "plugin.js",
            needs: vec![1],
            public: false,
            files: Vec::new(),
        }
    }

    /// Adds a file served at `/gui/{path}`; `path` is a plain file name such as `plugin.js`
    /// (`.js`, `.css`, `.json`, `.svg`), so nothing outside the plugin can be named.
    pub fn file(mut self, path: &'static str, body: &'static str) -> Self {
        assert!(
            is_plain_name(path) && content_type(path).is_some(),
            "GUI file {path:?} is not a plain .js, .css, .json or .svg name"
        );
        assert!(
            path != "manifest.json",
            "the framework writes manifest.json"
        );
        assert!(
            self.files.len() < MAX_FILES,
            "a plugin has at most {MAX_FILES} files"
        );
        self.files.retain(|file| file.path != path);
        self.files.push(GuiFile { path, body });
        self
    }

    /// Names the module exporting `mount(element, context)` (default `plugin.js`).
    pub fn entry_module(mut self, path: &'static str) -> Self {
        self.entry = path;
        self
    }

    /// The SA's interface versions the plugin's requests use.
    pub fn needs(mut self, versions: &[InterfaceVersion]) -> Self {
        self.needs = versions.to_vec();
        self
    }

    /// The shell may show the plugin before anyone signs in (login's, and registration's for
    /// signing up); others are shown only with a session.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    pub fn entry(&self) -> &'static str {
        self.entry
    }

    /// The file at `path`, with its content type; `None` for anything the plugin lacks.
    pub fn find(&self, path: &str) -> Option<(&'static str, &'static str)> {
        let file = self.files.iter().find(|file| file.path == path)?;
        Some((file.body, content_type(file.path)?))
    }

    /// The manifest the shell reads, given the versions the SA serves now.
    pub fn manifest(&self, sa: &str, serves: &[InterfaceVersion]) -> serde_json::Value {
        serde_json::json!({
            "name": sa,
            "title": {"en": self.title_en, "de": self.title_de},
            "entry": self.entry,
            "needs": self.needs,
            "serves": serves,
            "public": self.public,
        })
    }
}

/// `Content-Type` by extension; only what a plugin is made of.
fn content_type(path: &str) -> Option<&'static str> {
    let (_, extension) = path.rsplit_once('.')?;
    match extension {
        "js" => Some("text/javascript; charset=utf-8"),
        "css" => Some("text/css; charset=utf-8"),
        "json" => Some("application/json"),
        "svg" => Some("image/svg+xml"),
        _ => None,
    }
}

fn is_plain_name(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 64
        && !path.starts_with('.')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_found_with_their_type_and_nothing_else() {
        let gui = Gui::new("Shop", "Laden")
            .file("plugin.js", "js")
            .file("style.css", "css");
        fn check(gui: &Gui, path: &str, expected: Option<(&str, &str)>) {
            assert_eq!(gui.find(path), expected, "{path}");
        }
        check(
            &gui,
            "plugin.js",
            Some(("js", "text/javascript; charset=utf-8")),
        );
        check(&gui, "style.css", Some(("css", "text/css; charset=utf-8")));
        check(&gui, "other.js", None);
        check(&gui, "../plugin.js", None);
    }

    #[test]
    fn the_manifest_names_needs_and_serves() {
        let gui = Gui::new("Registration", "Registrierung")
            .needs(&[2])
            .public();
        let manifest = gui.manifest("registration", &[1, 2]);
        assert_eq!(manifest["name"], "registration");
        assert_eq!(manifest["title"]["de"], "Registrierung");
        assert_eq!(manifest["entry"], "plugin.js");
        assert_eq!(manifest["needs"], serde_json::json!([2]));
        assert_eq!(manifest["serves"], serde_json::json!([1, 2]));
        assert_eq!(manifest["public"], true);
    }
}
