// Registration's GUI plugin: signing up (an anonymous create of a customer, which
// registration declares open) and, signed in, the customer's own person, addresses and bank
// account. It speaks interface v2 (the manifest says so; the shell refuses the plugin when
// registration no longer serves v2).

const V2 = 'application/vnd.registration.v2+json';

const TEXTS = {
  en: {
    signUpTitle: 'Create your account',
    account: 'Your login',
    login: 'Login name',
    loginHint: '3 to 64 letters, digits or . _ - @',
    password: 'Password',
    passwordHint: 'At least 8 characters',
    person: 'About you',
    givenName: 'Given name',
    familyName: 'Family name',
    email: 'E-mail (optional)',
    salutation: 'Salutation',
    none: 'None',
    mr: 'Mr', ms: 'Ms', mx: 'Mx', dr: 'Dr',
    home: 'Home address',
    bill: 'Billing address',
    street: 'Street and number',
    zip: 'Postcode',
    city: 'City',
    bank: 'Bank account',
    owner: 'Account holder',
    iban: 'IBAN',
    bic: 'BIC (optional)',
    create: 'Create account',
    creating: 'Creating your account…',
    haveAccount: 'Already have an account?',
    signIn: 'Sign in',
    myTitle: 'Your details',
    tabs: 'Your details',
    save: 'Save',
    saving: 'Saving…',
    saved: 'Saved.',
    loading: 'Loading your details…',
    taken: 'This login name is already taken. Please choose another one.',
    codes: {
      'invalid-login': 'The login name must have 3 to 64 letters, digits or . _ - @.',
      'weak-password': 'The password must have 8 to 256 characters.',
      'invalid-zip': 'The postcode must have 3 to 10 letters or digits.',
      'invalid-iban': 'This IBAN is not valid. Please check it.',
      'invalid-bic': 'A BIC has 8 or 11 capital letters or digits.',
      'invalid-email': 'The e-mail address is not valid.',
      'invalid-field': 'Please fill in every required field.',
      'too-many-sign-ups': 'Many people are signing up right now. Please try again in a minute.',
    },
  },
  de: {
    signUpTitle: 'Konto anlegen',
    account: 'Ihre Anmeldung',
    login: 'Benutzername',
    loginHint: '3 bis 64 Buchstaben, Ziffern oder . _ - @',
    password: 'Passwort',
    passwordHint: 'Mindestens 8 Zeichen',
    person: 'Über Sie',
    givenName: 'Vorname',
    familyName: 'Nachname',
    email: 'E-Mail (freiwillig)',
    salutation: 'Anrede',
    none: 'Keine',
    mr: 'Herr', ms: 'Frau', mx: 'Divers', dr: 'Dr.',
    home: 'Wohnadresse',
    bill: 'Rechnungsadresse',
    street: 'Straße und Hausnummer',
    zip: 'Postleitzahl',
    city: 'Ort',
    bank: 'Bankverbindung',
    owner: 'Kontoinhaber',
    iban: 'IBAN',
    bic: 'BIC (freiwillig)',
    create: 'Konto anlegen',
    creating: 'Ihr Konto wird angelegt…',
    haveAccount: 'Sie haben schon ein Konto?',
    signIn: 'Anmelden',
    myTitle: 'Ihre Daten',
    tabs: 'Ihre Daten',
    save: 'Speichern',
    saving: 'Wird gespeichert…',
    saved: 'Gespeichert.',
    loading: 'Ihre Daten werden geladen…',
    taken: 'Dieser Benutzername ist schon vergeben. Bitte wählen Sie einen anderen.',
    codes: {
      'invalid-login': 'Der Benutzername muss 3 bis 64 Buchstaben, Ziffern oder . _ - @ haben.',
      'weak-password': 'Das Passwort muss 8 bis 256 Zeichen haben.',
      'invalid-zip': 'Die Postleitzahl muss 3 bis 10 Buchstaben oder Ziffern haben.',
      'invalid-iban': 'Diese IBAN ist ungültig. Bitte prüfen Sie sie.',
      'invalid-bic': 'Eine BIC hat 8 oder 11 Großbuchstaben oder Ziffern.',
      'invalid-email': 'Die E-Mail-Adresse ist ungültig.',
      'invalid-field': 'Bitte füllen Sie alle Pflichtfelder aus.',
      'too-many-sign-ups': 'Gerade melden sich sehr viele an. Bitte versuchen Sie es in einer Minute erneut.',
    },
  },
};

let alive = false;

export function mount(element, context) {
  alive = true;
  const text = context.t(TEXTS);
  if (!context.session) return signUp(element, context, text);
  return details(element, context, text);
}

export function unmount() {
  alive = false;
}

/** Words for a refused request: the plugin's own for the codes it knows, else the shell's. */
function words(answer, text) {
  if (answer.status === 409 && answer.code === 'already-taken') return text.taken;
  return text.codes[answer.code] || answer.message;
}

function signUp(element, context, text) {
  const { h, field } = context.ui;
  const error = h('p', { role: 'alert', class: 'error', hidden: true });
  const status = h('p', { role: 'status' });
  const button = h('button', { type: 'submit' }, text.create);
  const form = h('form', { novalidate: true },
    h('fieldset', { class: 'card' }, h('legend', {}, text.account),
      h('div', { class: 'row' },
        field(text.login, { name: 'login', autocomplete: 'username', required: true, maxlength: 64, hint: text.loginHint }),
        field(text.password, { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8, maxlength: 256, hint: text.passwordHint }))),
    h('fieldset', { class: 'card' }, h('legend', {}, text.person),
      h('div', { class: 'row' },
        field(text.givenName, { name: 'given_name', autocomplete: 'given-name', required: true, maxlength: 100 }),
        field(text.familyName, { name: 'family_name', autocomplete: 'family-name', required: true, maxlength: 100 }))),
    h('fieldset', { class: 'card' }, h('legend', {}, text.home),
      addressFields(field, text, 'home')),
    h('fieldset', { class: 'card' }, h('legend', {}, text.bank),
      h('div', { class: 'row' },
        field(text.iban, { name: 'iban', required: true, maxlength: 42, autocomplete: 'off' }))),
    h('div', { class: 'actions' }, button),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (name) => form.elements[name].value.trim();
    const home = { street: value('home_street'), zip: value('home_zip'), city: value('home_city') };
    const name = `${value('given_name')} ${value('family_name')}`.trim();
    const body = {
      account: { login: value('login'), password: form.elements.password.value },
      person: { type: 'natural', given_name: value('given_name'), family_name: value('family_name') },
      // The bill goes home until the customer says otherwise (in their details).
      addresses: { home, bill: { ...home } },
      bankaccount: { owner: name, iban: value('iban') },
    };
    error.hidden = true;
    button.disabled = true;
    status.textContent = text.creating;
    status.className = 'status';
    const answer = await context.api.request('/customers', {
      json: body,
      anonymous: true,
      headers: { Accept: V2, 'Content-Type': V2 },
    });
    if (!alive) return;
    button.disabled = false;
    status.textContent = '';
    status.className = '';
    if (!answer.ok) {
      error.textContent = words(answer, text);
      error.hidden = false;
      error.focus?.();
      return;
    }
    // Login's copy of the account follows in a moment; its plugin waits for it.
    context.api.navigate('login', '', { fresh: body.account.login });
  });
  element.append(
    h('h1', {}, text.signUpTitle),
    status,
    error,
    form,
    h('p', {}, `${text.haveAccount} `, h('a', { href: '#/login' }, text.signIn)),
  );
}

function addressFields(field, text, prefix, address = {}) {
  const row = document.createElement('div');
  row.className = 'row';
  row.append(
    field(text.street, { name: `${prefix}_street`, autocomplete: prefix === 'home' ? 'street-address' : 'off', required: true, maxlength: 200, value: address.street || '' }),
    field(text.zip, { name: `${prefix}_zip`, autocomplete: prefix === 'home' ? 'postal-code' : 'off', required: true, maxlength: 10, value: address.zip || '' }),
    field(text.city, { name: `${prefix}_city`, autocomplete: prefix === 'home' ? 'address-level2' : 'off', required: true, maxlength: 100, value: address.city || '' }),
  );
  return row;
}

/** The signed-in customer's own data, one view per part: person, addresses, bank account. */
async function details(element, context, text) {
  const { h } = context.ui;
  const views = [
    ['person', text.person],
    ['addresses', `${text.home} / ${text.bill}`],
    ['bankaccount', text.bank],
  ];
  const view = views.some(([name]) => name === context.view) ? context.view : 'person';
  const body = h('div', {}, h('p', { class: 'status', role: 'status' }, text.loading));
  element.append(
    h('h1', {}, text.myTitle),
    h('nav', { 'aria-label': text.tabs },
      h('ul', { class: 'actions list-plain' },
        views.map(([name, label]) => h('li', {},
          h('a', { href: `#/registration/${name}`, 'aria-current': name === view ? 'page' : null }, label))))),
    body,
  );
  const id = encodeURIComponent(context.session.customer);
  const answer = await context.api.request(`/customers/${id}`, { headers: { Accept: V2 } });
  if (!alive) return;
  if (!answer.ok) {
    body.replaceChildren(h('p', { class: 'error', role: 'alert' }, answer.message));
    return;
  }
  const customer = answer.data;
  if (view === 'person') body.replaceChildren(personForm(context, text, id, customer.person || {}));
  if (view === 'addresses') {
    body.replaceChildren(
      addressForm(context, text, id, 'home', customer.addresses?.home || {}),
      addressForm(context, text, id, 'bill', customer.addresses?.bill || {}),
    );
  }
  if (view === 'bankaccount') body.replaceChildren(bankForm(context, text, id, customer.bankaccount || {}));
}

/** A form that PUTs one aspect and says how it went. */
function aspectForm(context, text, legend, path, fields, collect) {
  const { h } = context.ui;
  const outcome = h('p', { role: 'status' });
  const button = h('button', { type: 'submit' }, text.save);
  const form = h('form', { class: 'card', novalidate: true },
    h('h2', {}, legend), fields, h('div', { class: 'actions' }, button, outcome));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    outcome.textContent = text.saving;
    outcome.className = '';
    const answer = await context.api.request(path, {
      method: 'PUT',
      json: collect(form),
      headers: { Accept: V2, 'Content-Type': V2 },
    });
    if (!alive) return;
    button.disabled = false;
    outcome.textContent = answer.ok ? text.saved : words(answer, text);
    outcome.className = answer.ok ? 'ok' : 'error';
    outcome.setAttribute('role', answer.ok ? 'status' : 'alert');
  });
  return form;
}

function personForm(context, text, id, person) {
  const { h, field } = context.ui;
  const salutations = [['', text.none], ['MR', text.mr], ['MS', text.ms], ['MX', text.mx], ['DR', text.dr]];
  return aspectForm(context, text, text.person, `/customers/${id}/person`,
    h('div', { class: 'row' },
      field(text.salutation, { tag: 'select', name: 'salutation', options: salutations, value: person.salutation || '' }),
      field(text.givenName, { name: 'given_name', required: true, maxlength: 100, value: person.given_name || '' }),
      field(text.familyName, { name: 'family_name', required: true, maxlength: 100, value: person.family_name || '' }),
      field(text.email, { name: 'email', type: 'email', maxlength: 254, value: person.email || '' })),
    (form) => {
      const document = {
        type: person.type || 'natural',
        given_name: form.elements.given_name.value.trim(),
        family_name: form.elements.family_name.value.trim(),
      };
      if (form.elements.salutation.value) document.salutation = form.elements.salutation.value;
      if (form.elements.email.value.trim()) document.email = form.elements.email.value.trim();
      if (person.birthdate) document.birthdate = person.birthdate;
      return document;
    });
}

function addressForm(context, text, id, kind, address) {
  return aspectForm(context, text, kind === 'home' ? text.home : text.bill, `/customers/${id}/address.${kind}`,
    addressFields(context.ui.field, text, kind, address),
    (form) => ({
      street: form.elements[`${kind}_street`].value.trim(),
      zip: form.elements[`${kind}_zip`].value.trim(),
      city: form.elements[`${kind}_city`].value.trim(),
    }));
}

function bankForm(context, text, id, bank) {
  const { h, field } = context.ui;
  return aspectForm(context, text, text.bank, `/customers/${id}/bankaccount`,
    h('div', { class: 'row' },
      field(text.owner, { name: 'owner', required: true, maxlength: 200, value: bank.owner || '' }),
      field(text.iban, { name: 'iban', required: true, maxlength: 42, value: bank.iban || '' }),
      field(text.bic, { name: 'bic', maxlength: 11, value: bank.bic || '' })),
    (form) => {
      const document = { owner: form.elements.owner.value.trim(), iban: form.elements.iban.value.trim() };
      if (form.elements.bic.value.trim()) document.bic = form.elements.bic.value.trim();
      return document;
    });
}
