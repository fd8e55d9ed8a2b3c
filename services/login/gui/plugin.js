// Login's GUI plugin: signing in (POST /login/sessions) and out. Served by login's own units;
// the shell mounts it first. Right after signing up, login's copy of the new account may lag a
// moment behind registration: for the login that was just signed up (params `fresh`), a
// refused sign-in is tried again a few times, bounded well below login's limit of failed
// attempts, while the page says the account is being set up.

const TEXTS = {
  en: {
    title: 'Sign in',
    signedInTitle: 'You are signed in',
    signedInAs: (login) => `You are signed in as ${login}.`,
    login: 'Login name',
    password: 'Password',
    submit: 'Sign in',
    working: 'Signing in…',
    settingUp: 'Your account is being set up. This takes only a moment…',
    stillSettingUp: 'Your account is not ready yet. Please try signing in again in a minute.',
    wrong: 'The login name or the password is wrong.',
    locked: 'This login failed too often. Please wait 15 minutes and try again.',
    newHere: 'New here?',
    signUp: 'Create an account',
    logout: 'Log out',
    justSignedUp: 'Your account was created. Sign in with your new password.',
  },
  de: {
    title: 'Anmelden',
    signedInTitle: 'Sie sind angemeldet',
    signedInAs: (login) => `Sie sind als ${login} angemeldet.`,
    login: 'Benutzername',
    password: 'Passwort',
    submit: 'Anmelden',
    working: 'Anmeldung läuft…',
    settingUp: 'Ihr Konto wird eingerichtet. Das dauert nur einen Moment…',
    stillSettingUp: 'Ihr Konto ist noch nicht bereit. Bitte versuchen Sie es in einer Minute erneut.',
    wrong: 'Benutzername oder Passwort ist falsch.',
    locked: 'Diese Anmeldung ist zu oft fehlgeschlagen. Bitte warten Sie 15 Minuten.',
    newHere: 'Neu hier?',
    signUp: 'Konto anlegen',
    logout: 'Abmelden',
    justSignedUp: 'Ihr Konto wurde angelegt. Melden Sie sich mit Ihrem neuen Passwort an.',
  },
};

/** Pauses between the tries for a fresh account (ms): 7 tries over ~12 s, below the 10 allowed. */
const FRESH_RETRY_PAUSES = [500, 1000, 1500, 2000, 3000, 4000];

let stopped = false;

export function mount(element, context) {
  stopped = false;
  const text = context.t(TEXTS);
  const { h, field } = context.ui;
  if (context.session) {
    element.append(
      h('h1', {}, text.signedInTitle),
      h('div', { class: 'card' },
        h('p', {}, text.signedInAs(context.session.login)),
        h('button', { type: 'button', onclick: () => context.api.logout() }, text.logout)),
    );
    return;
  }
  const fresh = context.params.get('fresh') || '';
  const status = h('p', { role: 'status', class: fresh ? 'ok' : '', id: 'login-status' }, fresh ? text.justSignedUp : '');
  const error = h('p', { role: 'alert', class: 'error', hidden: true });
  const button = h('button', { type: 'submit' }, text.submit);
  const form = h('form', { class: 'card', novalidate: true, 'aria-describedby': 'login-status' },
    field(text.login, { name: 'login', autocomplete: 'username', required: true, value: fresh, maxlength: 64 }),
    field(text.password, { name: 'password', type: 'password', autocomplete: 'current-password', required: true, maxlength: 256 }),
    h('div', { class: 'actions' }, button),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const login = form.elements.login.value.trim();
    const password = form.elements.password.value;
    error.hidden = true;
    if (!login || !password) {
      showError(text.wrong);
      return;
    }
    button.disabled = true;
    setStatus(text.working, '');
    try {
      await signIn(login, password, login === fresh);
    } finally {
      button.disabled = false;
    }
  });

  async function signIn(login, password, isFresh) {
    for (let attempt = 0; ; attempt += 1) {
      const answer = await context.api.request('/sessions', { json: { login, password }, anonymous: true });
      if (stopped) return;
      if (answer.ok && answer.data && answer.data.token) {
        setStatus('', '');
        context.api.signedIn({ token: answer.data.token, customer: answer.data.customer, login });
        return;
      }
      if (answer.status === 401 && isFresh && attempt < FRESH_RETRY_PAUSES.length) {
        setStatus(text.settingUp, 'status');
        await new Promise((resolve) => setTimeout(resolve, FRESH_RETRY_PAUSES[attempt]));
        if (stopped) return;
        continue;
      }
      setStatus('', '');
      if (answer.status === 401) showError(isFresh ? text.stillSettingUp : text.wrong);
      else if (answer.status === 429) showError(text.locked);
      else showError(answer.message);
      return;
    }
  }

  function setStatus(message, kind) {
    status.textContent = message;
    status.className = message ? kind || 'status' : '';
  }

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
  }

  element.append(
    h('h1', {}, text.title),
    status,
    error,
    form,
    h('p', {}, `${text.newHere} `, h('a', { href: '#/registration/sign-up' }, text.signUp)),
  );
}

export function unmount() {
  stopped = true;
}
