// Shop's GUI plugin: the customer's home address as shop's own copy holds it (it arrives
// through registration's feed a moment after signing up: the plugin waits for it, bounded,
// saying so), the catalogue, placing an order, and the order history with cancelling.

const TEXTS = {
  en: {
    title: 'Shop',
    tabs: 'Shop',
    catalogue: 'Products',
    history: 'Your orders',
    deliverTo: 'Delivery to your home address',
    settingUp: 'Your customer data is being set up in the shop. This takes only a moment…',
    notYet: 'Your customer data has not reached the shop yet. Please reload the page in a minute.',
    loading: 'Loading…',
    quantity: (name) => `Quantity of ${name}`,
    place: 'Place order',
    placing: 'Placing your order…',
    nothingChosen: 'Choose a quantity of at least one product.',
    placed: (id) => `Thank you! Order ${id} has been placed.`,
    noOrders: 'You have not ordered anything yet.',
    order: (id) => `Order ${id}`,
    total: 'Total',
    status: { placed: 'placed', cancelled: 'cancelled' },
    cancel: (id) => `Cancel order ${id}`,
    cancelShort: 'Cancel',
    cancelling: 'Cancelling…',
    cancelled: (id) => `Order ${id} has been cancelled.`,
    codes: {
      'order-cancelled': 'This order is already cancelled.',
      'unknown-customer': 'The shop does not know you yet. Please try again in a moment.',
      'unknown-product': 'One of the products is no longer available.',
      'invalid-order': 'An order has 1 to 99 of each product.',
    },
  },
  de: {
    title: 'Laden',
    tabs: 'Laden',
    catalogue: 'Produkte',
    history: 'Ihre Bestellungen',
    deliverTo: 'Lieferung an Ihre Wohnadresse',
    settingUp: 'Ihre Kundendaten werden im Laden eingerichtet. Das dauert nur einen Moment…',
    notYet: 'Ihre Kundendaten sind noch nicht im Laden angekommen. Bitte laden Sie die Seite in einer Minute neu.',
    loading: 'Wird geladen…',
    quantity: (name) => `Menge von ${name}`,
    place: 'Bestellen',
    placing: 'Ihre Bestellung wird aufgegeben…',
    nothingChosen: 'Wählen Sie bei mindestens einem Produkt eine Menge.',
    placed: (id) => `Vielen Dank! Bestellung ${id} wurde aufgegeben.`,
    noOrders: 'Sie haben noch nichts bestellt.',
    order: (id) => `Bestellung ${id}`,
    total: 'Summe',
    status: { placed: 'aufgegeben', cancelled: 'storniert' },
    cancel: (id) => `Bestellung ${id} stornieren`,
    cancelShort: 'Stornieren',
    cancelling: 'Wird storniert…',
    cancelled: (id) => `Bestellung ${id} wurde storniert.`,
    codes: {
      'order-cancelled': 'Diese Bestellung ist schon storniert.',
      'unknown-customer': 'Der Laden kennt Sie noch nicht. Bitte versuchen Sie es gleich erneut.',
      'unknown-product': 'Eines der Produkte ist nicht mehr erhältlich.',
      'invalid-order': 'Eine Bestellung hat 1 bis 99 Stück je Produkt.',
    },
  },
};

/** How often and how long to wait for shop's copy of a new customer. */
const COPY_POLL_MS = 1000;
const COPY_POLL_TRIES = 45;

let alive = false;

export function mount(element, context) {
  alive = true;
  const text = context.t(TEXTS);
  const { h } = context.ui;
  const view = context.view === 'orders' ? 'orders' : '';
  const body = h('div', {});
  element.append(
    h('h1', {}, view === 'orders' ? text.history : text.title),
    h('nav', { 'aria-label': text.tabs },
      h('ul', { class: 'actions list-plain' },
        h('li', {}, h('a', { href: '#/shop', 'aria-current': view === '' ? 'page' : null }, text.catalogue)),
        h('li', {}, h('a', { href: '#/shop/orders', 'aria-current': view === 'orders' ? 'page' : null }, text.history)))),
    body,
  );
  return view === 'orders' ? orders(body, context, text) : catalogue(body, context, text);
}

export function unmount() {
  alive = false;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function words(answer, text) {
  return text.codes[answer.code] || answer.message;
}

function money(price, lang) {
  if (!price) return '';
  const amount = Number(price.amount);
  try {
    return new Intl.NumberFormat(lang === 'de' ? 'de-DE' : 'en-GB', { style: 'currency', currency: price.currency }).format(amount);
  } catch {
    return `${price.amount} ${price.currency}`;
  }
}

/** Shop's copy of the customer; waits (bounded) while the feed has not brought it yet. */
async function customerCopy(context, text, status) {
  const id = encodeURIComponent(context.session.customer);
  for (let attempt = 0; attempt < COPY_POLL_TRIES && alive; attempt += 1) {
    const answer = await context.api.request(`/customers/${id}`);
    if (answer.ok) return answer.data;
    if (answer.status !== 404) throw new Error(answer.message);
    status.textContent = text.settingUp;
    status.className = 'status';
    await sleep(COPY_POLL_MS);
  }
  return null;
}

async function catalogue(body, context, text) {
  const { h, field } = context.ui;
  const status = h('p', { role: 'status', class: 'status' }, text.loading);
  body.replaceChildren(status);
  let customer;
  try {
    customer = await customerCopy(context, text, status);
  } catch (error) {
    status.className = 'error';
    status.setAttribute('role', 'alert');
    status.textContent = error.message;
    return;
  }
  if (!alive) return;
  if (!customer) {
    status.className = 'error';
    status.textContent = text.notYet;
    return;
  }
  const person = customer.person || {};
  const home = customer.addresses?.home || {};
  const name = [person.given_name ?? person.firstname, person.family_name ?? person.lastname].filter(Boolean).join(' ');
  const products = await context.api.request('/products');
  if (!alive) return;
  if (!products.ok) {
    status.className = 'error';
    status.textContent = products.message;
    return;
  }
  status.textContent = '';
  status.className = '';
  const error = h('p', { role: 'alert', class: 'error', hidden: true });
  const button = h('button', { type: 'submit' }, text.place);
  const items = (products.data?.items || []).filter((item) => item.product);
  const form = h('form', { class: 'card', novalidate: true },
    h('h2', {}, text.catalogue),
    h('ul', { class: 'list' },
      items.map((item) => h('li', {},
        h('span', {}, h('strong', {}, item.product.name), ' ', h('span', { class: 'muted' }, money(item.product.price, context.lang))),
        field(text.quantity(item.product.name), { name: `q${item.id}`, 'data-product': item.id, type: 'number', min: 0, max: 99, value: 0, inputmode: 'numeric' })))),
    error,
    h('div', { class: 'actions' }, button));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    const lines = [...form.querySelectorAll('input[data-product]')]
      .map((input) => ({ product: input.dataset.product, quantity: Number.parseInt(input.value, 10) || 0 }))
      .filter((line) => line.quantity > 0);
    if (!lines.length) {
      error.textContent = text.nothingChosen;
      error.hidden = false;
      return;
    }
    button.disabled = true;
    status.textContent = text.placing;
    status.className = 'status';
    const answer = await context.api.request('/orders', { json: { order: { lines } } });
    if (!alive) return;
    button.disabled = false;
    status.textContent = '';
    status.className = '';
    if (!answer.ok) {
      error.textContent = words(answer, text);
      error.hidden = false;
      return;
    }
    context.api.navigate('shop', 'orders', { placed: answer.data.id });
  });
  body.replaceChildren(
    status,
    h('section', { class: 'card', 'aria-labelledby': 'shop-home' },
      h('h2', { id: 'shop-home' }, text.deliverTo),
      h('address', { 'data-testid': 'home-address' },
        name, h('br'), home.street || '', h('br'), `${home.zip || ''} ${home.city || ''}`.trim())),
    form,
  );
}

async function orders(body, context, text) {
  const { h } = context.ui;
  const status = h('p', { role: 'status', class: 'status' }, text.loading);
  body.replaceChildren(status);
  const placed = context.params.get('placed');
  const cancelled = context.params.get('cancelled');
  const [answer, products] = await Promise.all([context.api.request('/orders'), context.api.request('/products')]);
  if (!alive) return;
  const names = new Map((products.data?.items || []).filter((item) => item.product).map((item) => [item.id, item.product.name]));
  if (!answer.ok) {
    status.className = 'error';
    status.setAttribute('role', 'alert');
    status.textContent = answer.message;
    return;
  }
  status.textContent = placed ? text.placed(placed) : cancelled ? text.cancelled(cancelled) : '';
  status.className = placed || cancelled ? 'ok' : '';
  const items = (answer.data?.items || []).filter((item) => item.order).sort((a, b) => Number(b.id) - Number(a.id));
  if (!items.length) {
    body.replaceChildren(status, h('p', {}, text.noOrders));
    return;
  }
  body.replaceChildren(status, h('ul', { class: 'list card' }, items.map((item) => orderItem(item))));

  function orderItem(item) {
    const state = item.status?.status || 'placed';
    const outcome = h('span', { role: 'status' });
    const cancel = state === 'placed'
      ? h('button', { type: 'button', class: 'secondary', 'aria-label': text.cancel(item.id), onclick: () => cancelOrder(item, cancel, outcome) }, text.cancelShort)
      : null;
    const lines = (item.order.lines || []).map((line) => `${line.quantity} × ${names.get(line.product) || line.product}`).join(', ');
    return h('li', { 'data-order': item.id },
      h('span', {}, h('strong', {}, text.order(item.id)), ' ',
        h('span', { class: 'badge', 'data-status': state }, text.status[state] || state), h('br'),
        h('span', {}, lines), h('br'),
        h('span', { class: 'muted' }, `${text.total}: ${money(item.order.total, context.lang)}`)),
      cancel, outcome);
  }

  async function cancelOrder(item, button, outcome) {
    button.disabled = true;
    outcome.textContent = text.cancelling;
    const answer = await context.api.request(`/orders/${encodeURIComponent(item.id)}/cancel`, { json: {} });
    if (!alive) return;
    if (!answer.ok) {
      button.disabled = false;
      outcome.textContent = words(answer, text);
      outcome.className = 'error';
      return;
    }
    context.api.navigate('shop', 'orders', { cancelled: item.id });
  }
}
