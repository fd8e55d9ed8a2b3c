// The GUI shell: loads each service area's plugin (its /{sa}/gui/manifest.json and entry
// module, both served by that SA's own units), shows the login plugin first and then a
// navigation of the others, and hands each plugin mount(element, context). One origin (the
// gateway or HAProxy in front of the units), so no CORS; the page's Content-Security-Policy
// allows scripts from this origin only.
//
// Views are addressed by the URL's fragment, #/{sa}/{view}?{params}, so deep links, reload and
// the back button work without the server knowing the views, and no view path can collide
// with the /{sa}/… paths the gateway routes to the units.

import { TEXTS, pickLanguage } from './texts.js';
import { h, field } from './ui.js';

const lang = pickLanguage(navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language]);
const T = TEXTS[lang];
const SESSION_KEY = 'hiscale.session';
const RETURN_KEY = 'hiscale.return';
/** A manifest that takes longer than this counts as unreachable. */
const MANIFEST_TIMEOUT_MS = 5000;
/** A plugin's request that takes longer than this is given up (the unit answers long before). */
const REQUEST_TIMEOUT_MS = 15000;
/** How long signing out waits for login before forgetting the session anyway. */
const SIGN_OUT_TIMEOUT_MS = 5000;

const main = document.getElementById('main');
const notice = document.getElementById('notice');
let config = { login: 'login', plugins: [] };
/** sa → { state: 'ok' | 'unavailable' | 'outdated', manifest, url } */
const plugins = new Map();
/** The mounted plugin: { sa, module, element }. */
let mounted = null;
/** Bumped on every render, so a slow import for a view the user already left is dropped. */
let generation = 0;
let expiryTimer = null;

// ---------------------------------------------------------------------------------------------
// Session: the token login issued, kept in this browser profile (localStorage, so a deep link
// opened in a new tab works), ended on logout or expiry.

/** The session's claims (`v2.<key id>.<base64url JSON>.<signature>`: the part before the
 * signature); only `exp`, `sub` and `login` are read here. */
function claimsOf(token) {
  try {
    const parts = token.split('.');
    const payload = parts[parts.length - 2].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload));
  } catch {
    return null;
  }
}

function currentSession() {
  let session = null;
  try {
    session = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
  } catch {
    session = null;
  }
  if (!session || typeof session.token !== 'string') return null;
  if (typeof session.exp === 'number' && session.exp * 1000 <= Date.now()) {
    localStorage.removeItem(SESSION_KEY);
    showNotice(T.expired);
    return null;
  }
  return session;
}

function signedIn({ token, customer, login }) {
  const claims = claimsOf(token) || {};
  const session = { token, customer: String(customer ?? claims.sub), login: login ?? claims.login, exp: claims.exp };
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  hideNotice();
  scheduleExpiry(session);
  updateHeader();
  renderNav();
  const back = sessionStorage.getItem(RETURN_KEY);
  sessionStorage.removeItem(RETURN_KEY);
  go(back || `#/${firstPrivate() || config.login}`);
}

function endSession(message) {
  localStorage.removeItem(SESSION_KEY);
  if (expiryTimer) clearTimeout(expiryTimer);
  showNotice(message);
  updateHeader();
  renderNav();
  go(`#/${config.login}`);
}

/**
 * Signs out: ends the session at login (`DELETE /{login}/sessions/current`), so every SA
 * refuses the token once the revocation has reached it, then forgets it here. Forgets it even
 * when login cannot be reached (the token then lives until its `exp`).
 */
async function signOut() {
  const session = currentSession();
  if (session) {
    try {
      await fetch(`/${config.login}/sessions/current`, {
        method: 'DELETE',
        headers: { Authorization: `Bearer ${session.token}`, Accept: 'application/json' },
        signal: AbortSignal.timeout(SIGN_OUT_TIMEOUT_MS),
      });
    } catch (error) {
      console.warn('signing out at login failed; the session is forgotten here only:', error);
    }
  }
  endSession(T.loggedOut);
}

function scheduleExpiry(session) {
  if (expiryTimer) clearTimeout(expiryTimer);
  if (typeof session?.exp !== 'number') return;
  const left = session.exp * 1000 - Date.now();
  // setTimeout holds at most ~24.8 days; sessions live hours.
  expiryTimer = setTimeout(() => endSession(T.expired), Math.max(0, Math.min(left, 2 ** 31 - 1)));
}

// ---------------------------------------------------------------------------------------------
// Plugins: the list comes from the gateway (/shell/plugins.json), each manifest from its SA.

async function loadConfig() {
  const response = await fetch('/shell/plugins.json', { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error(`plugins.json: ${response.status}`);
  const loaded = await response.json();
  config = {
    login: String(loaded.login),
    plugins: (loaded.plugins || []).map(String).filter((sa) => /^[a-z][a-z0-9]*$/.test(sa)),
  };
}

async function loadManifest(sa) {
  const url = new URL(`/${sa}/gui/manifest.json`, location.origin);
  let entry;
  try {
    const response = await fetch(url, { headers: { Accept: 'application/json' }, signal: AbortSignal.timeout(MANIFEST_TIMEOUT_MS) });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const manifest = await response.json();
    if (typeof manifest.entry !== 'string' || !Array.isArray(manifest.needs) || !Array.isArray(manifest.serves)) {
      throw new Error('not a plugin manifest');
    }
    const missing = manifest.needs.filter((version) => !manifest.serves.includes(version));
    entry = { state: missing.length ? 'outdated' : 'ok', manifest, url };
  } catch (error) {
    console.warn(`the ${sa} plugin's manifest cannot be loaded:`, error);
    entry = { state: 'unavailable', manifest: plugins.get(sa)?.manifest || null, url };
  }
  plugins.set(sa, entry);
  return entry;
}

function titleOf(sa) {
  const title = plugins.get(sa)?.manifest?.title;
  if (title && typeof title === 'object') return String(title[lang] || title.en || sa);
  return sa.charAt(0).toUpperCase() + sa.slice(1);
}

function isPublic(sa) {
  return sa === config.login || plugins.get(sa)?.manifest?.public === true;
}

function firstPrivate() {
  return config.plugins.find((sa) => sa !== config.login && !isPublic(sa)) || null;
}

// ---------------------------------------------------------------------------------------------
// The API a plugin gets: requests to its own SA with the session's token, navigation, errors.

/** Words for an error a service answered with, by status and code (never the code itself). */
function describe(status, code) {
  if (status === 0) return T.network;
  if (code === 'busy') return T.busy;
  if (status === 429) return T.tooMany;
  if (status === 502 || status === 503 || status === 504) return T.unavailableService;
  if (status === 401 || status === 403) return T.denied;
  if (status === 404) return T.missing;
  if (status === 409 || status === 412) return T.conflict;
  if (status === 400 || status === 413 || status === 415) return T.invalid;
  return T.unexpected;
}

function apiFor(sa) {
  /**
   * A request to this plugin's SA: `path` is below the SA (`/orders`). `options.json` is sent as
   * the JSON body. Answers `{ ok, status, data, code, message }`: `message` is a sentence for
   * the user (the plugin may prefer its own words for a `code`). A 401 with a session means it
   * expired or was revoked: the shell returns to the login.
   */
  async function request(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (!headers.has('Accept')) headers.set('Accept', 'application/json');
    const session = currentSession();
    if (session && options.anonymous !== true) headers.set('Authorization', `Bearer ${session.token}`);
    let body = options.body;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      if (!headers.has('Content-Type')) headers.set('Content-Type', 'application/json');
    }
    let response;
    try {
      response = await fetch(`/${sa}${path}`, {
        method: options.method || (body === undefined ? 'GET' : 'POST'),
        headers,
        body,
        signal: AbortSignal.timeout(options.timeoutMs || REQUEST_TIMEOUT_MS),
      });
    } catch {
      return { ok: false, status: 0, data: null, code: 'network', message: T.network };
    }
    const text = await response.text().catch(() => '');
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    const code = data && typeof data === 'object' && data.error ? data.error.code : undefined;
    if (response.status === 401 && session && options.anonymous !== true) {
      endSession(T.expired);
    }
    return { ok: response.ok, status: response.status, data, code, message: response.ok ? '' : describe(response.status, code) };
  }
  return {
    request,
    fetch: request,
    navigate: (target, view = '', params = undefined) => go(hashOf(target, view, params)),
    showError: (message) => showNotice(String(message)),
    signedIn,
    logout: () => signOut(),
  };
}

function hashOf(sa, view, params) {
  const query = params ? new URLSearchParams(params).toString() : '';
  return `#/${sa}${view ? `/${view}` : ''}${query ? `?${query}` : ''}`;
}

// ---------------------------------------------------------------------------------------------
// Rendering: the route picks the plugin; the plugin renders into its own area.

function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = hash.split('?');
  const [sa = '', ...rest] = path.split('/').filter(Boolean);
  return { sa, view: rest.join('/'), params: new URLSearchParams(query) };
}

function go(hash) {
  if (location.hash === hash) {
    render();
  } else {
    location.hash = hash;
  }
}

function unmountCurrent() {
  if (!mounted) return;
  const { module, element, sa } = mounted;
  mounted = null;
  try {
    if (typeof module.unmount === 'function') module.unmount(element);
  } catch (error) {
    console.warn(`the ${sa} plugin failed to unmount:`, error);
  }
}

function area(sa) {
  const section = h('section', { class: 'plugin', 'data-plugin': sa, 'aria-label': titleOf(sa) });
  main.replaceChildren(section);
  return section;
}

function problem(element, title, text, retry) {
  element.classList.add('plugin-error');
  element.replaceChildren(
    h('h1', { tabindex: '-1' }, title),
    h('p', { class: 'error', role: 'alert' }, text),
    retry ? h('div', { class: 'actions' }, h('button', { type: 'button', onclick: retry }, T.retry)) : '',
  );
}

async function render() {
  const mine = ++generation;
  const route = parseRoute();
  const session = currentSession();
  updateHeader();
  if (!route.sa) {
    location.replace(hashOf(session ? firstPrivate() || config.login : config.login));
    return;
  }
  const known = route.sa === config.login || config.plugins.includes(route.sa);
  unmountCurrent();
  const element = area(route.sa);
  if (!known) {
    problem(element, T.notFound, T.notFound);
    focusHeading(element);
    renderNav(route.sa);
    return;
  }
  // Asked again on every visit: the SA may have gone away (or come back, or retired a
  // version) since the last one.
  const entry = await loadManifest(route.sa);
  if (mine !== generation) return;
  if (!session && entry.state === 'ok' && !isPublic(route.sa)) {
    sessionStorage.setItem(RETURN_KEY, location.hash);
    // A notice already shown (the session just expired) says more than this one.
    if (notice.hidden) showNotice(T.signInFirst);
    location.replace(hashOf(config.login));
    return;
  }
  renderNav(route.sa);
  const title = titleOf(route.sa);
  document.title = `${title} · HiScale`;
  if (entry.state === 'unavailable') {
    problem(element, T.unavailableTitle(title), T.unavailable(title), () => render());
    focusHeading(element);
    return;
  }
  if (entry.state === 'outdated') {
    problem(element, T.outdatedTitle(title), T.outdated(title, entry.manifest.needs, entry.manifest.serves));
    focusHeading(element);
    return;
  }
  element.replaceChildren(h('p', { class: 'status', role: 'status' }, T.loadingPlugin(title)));
  const moduleUrl = new URL(entry.manifest.entry, entry.url);
  let module;
  try {
    if (moduleUrl.origin !== location.origin) throw new Error('a plugin is served by its own SA, on this origin');
    module = await import(moduleUrl.href);
    if (typeof module.mount !== 'function') throw new Error('the module exports no mount(element, context)');
  } catch (error) {
    console.error(`the ${route.sa} plugin cannot be loaded:`, error);
    if (mine !== generation) return;
    problem(element, T.unavailableTitle(title), T.unavailable(title), () => render());
    focusHeading(element);
    return;
  }
  if (mine !== generation) return;
  element.replaceChildren();
  const context = {
    sa: route.sa,
    base: `/${route.sa}`,
    lang,
    view: route.view,
    params: route.params,
    session: session ? { token: session.token, customer: session.customer, login: session.login } : null,
    api: apiFor(route.sa),
    t: (texts) => (texts[lang] !== undefined ? texts[lang] : texts.en),
    ui: { h, field },
  };
  mounted = { sa: route.sa, module, element };
  try {
    await module.mount(element, context);
  } catch (error) {
    console.error(`the ${route.sa} plugin failed:`, error);
    if (mine !== generation) return;
    unmountCurrent();
    problem(element, T.brokenTitle(title), T.broken(title), () => render());
  }
  if (mine === generation) focusHeading(element);
}

function focusHeading(element) {
  const heading = element.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
}

// ---------------------------------------------------------------------------------------------
// Header: navigation, who is signed in, logout, and the shell's notices.

function renderNav(active = parseRoute().sa) {
  const session = currentSession();
  const list = document.getElementById('nav-list');
  // Signed in: every plugin but the login's (the header has Log out); signed out: the public
  // ones (signing in and up).
  const shown = [config.login, ...config.plugins.filter((sa) => sa !== config.login)].filter((sa) =>
    session ? sa !== config.login : isPublic(sa),
  );
  list.replaceChildren(
    ...shown.map((sa) => {
      const entry = plugins.get(sa);
      const link = h('a', { href: hashOf(sa), 'data-nav': sa }, titleOf(sa));
      if (entry && entry.state !== 'ok') link.classList.add('unavailable');
      if (sa === active) link.setAttribute('aria-current', 'page');
      return h('li', {}, link);
    }),
  );
}

function updateHeader() {
  const session = currentSession();
  document.getElementById('who').hidden = !session;
  document.getElementById('who-name').textContent = session ? `${T.signedInAs} ${session.login}` : '';
}

/** Notices outlive one change of view (the redirect that follows them), then go. */
let noticeViews = 0;

function showNotice(message) {
  notice.textContent = message;
  notice.hidden = false;
  noticeViews = 1;
}

function hideNotice() {
  notice.hidden = true;
  notice.textContent = '';
}

function ageNotice() {
  if (noticeViews > 0) {
    noticeViews -= 1;
  } else {
    hideNotice();
  }
}

// A plugin's error outside mount (an event handler, a timer) still gets words in its area.
function onPluginFailure(event) {
  if (!mounted) return;
  console.error('a plugin failed:', event.reason || event.error || event);
  showNotice(T.broken(titleOf(mounted.sa)));
}

async function boot() {
  document.documentElement.lang = lang;
  document.getElementById('skip-link').textContent = T.skip;
  document.getElementById('nav').setAttribute('aria-label', T.nav);
  document.getElementById('logout').textContent = T.logout;
  document.getElementById('logout').addEventListener('click', () => signOut());
  window.addEventListener('error', onPluginFailure);
  window.addEventListener('unhandledrejection', onPluginFailure);
  window.addEventListener('hashchange', () => {
    ageNotice();
    render();
  });
  try {
    await loadConfig();
  } catch (error) {
    console.error(error);
    main.replaceChildren(h('p', { class: 'error', role: 'alert' }, T.network));
    return;
  }
  await Promise.all([config.login, ...config.plugins].map(loadManifest));
  scheduleExpiry(currentSession());
  renderNav();
  await render();
}

boot();
