// Billing's GUI plugin: the customer's invoices (made by billing's batch units from billing's
// copy of shop's orders), with the bill address and bank account from billing's own copy of
// the customer. While an order has no invoice yet, or a cancelled order's invoice is not void
// yet, the plugin says so and looks again, bounded.

const TEXTS = {
  en: {
    title: 'Invoices',
    billTo: 'Bills go to',
    debit: 'Paid from',
    settingUp: 'Your billing data is being set up. This takes only a moment…',
    notYet: 'Your billing data has not arrived yet. Please reload the page in a minute.',
    loading: 'Loading…',
    noInvoices: 'You have no invoices yet.',
    preparing: (ids) => `The invoice for order ${ids.join(', ')} is being prepared…`,
    voiding: (ids) => `The invoice for cancelled order ${ids.join(', ')} is being voided…`,
    stillWorking: 'Some invoices are still being prepared. Please reload the page in a minute.',
    invoice: (id) => `Invoice ${id}`,
    forOrder: (id) => `for order ${id}`,
    issued: 'Issued',
    status: { open: 'open', void: 'void' },
    iban: 'IBAN',
  },
  de: {
    title: 'Rechnungen',
    billTo: 'Rechnungen gehen an',
    debit: 'Bezahlt von',
    settingUp: 'Ihre Abrechnungsdaten werden eingerichtet. Das dauert nur einen Moment…',
    notYet: 'Ihre Abrechnungsdaten sind noch nicht angekommen. Bitte laden Sie die Seite in einer Minute neu.',
    loading: 'Wird geladen…',
    noInvoices: 'Sie haben noch keine Rechnungen.',
    preparing: (ids) => `Die Rechnung für Bestellung ${ids.join(', ')} wird erstellt…`,
    voiding: (ids) => `Die Rechnung für die stornierte Bestellung ${ids.join(', ')} wird storniert…`,
    stillWorking: 'Einige Rechnungen werden noch erstellt. Bitte laden Sie die Seite in einer Minute neu.',
    invoice: (id) => `Rechnung ${id}`,
    forOrder: (id) => `zu Bestellung ${id}`,
    issued: 'Ausgestellt',
    status: { open: 'offen', void: 'storniert' },
    iban: 'IBAN',
  },
};

const POLL_MS = 1000;
const POLL_TRIES = 60;

let alive = false;

export async function mount(element, context) {
  alive = true;
  const text = context.t(TEXTS);
  const { h } = context.ui;
  const status = h('p', { role: 'status', class: 'status' }, text.loading);
  const details = h('div', {});
  const list = h('div', {});
  element.append(h('h1', {}, text.title), status, details, list);
  const id = encodeURIComponent(context.session.customer);
  for (let attempt = 0; attempt < POLL_TRIES && alive; attempt += 1) {
    const [customer, invoices, orders] = await Promise.all([
      context.api.request(`/customers/${id}`),
      context.api.request('/invoices'),
      context.api.request('/orders'),
    ]);
    if (!alive) return;
    const failed = [customer, invoices, orders].find((answer) => !answer.ok && answer.status !== 404);
    if (failed) {
      status.className = 'error';
      status.setAttribute('role', 'alert');
      status.textContent = failed.message;
      return;
    }
    if (customer.ok) details.replaceChildren(customerCard(context, text, customer.data));
    const invoiceItems = (invoices.data?.items || []).filter((item) => item.invoice);
    list.replaceChildren(invoiceList(context, text, invoiceItems));
    const byOrder = new Map(invoiceItems.map((item) => [item.invoice.order, item.invoice]));
    const orderItems = (orders.data?.items || []).filter((item) => item.order);
    const preparing = orderItems.filter((item) => item.status?.status !== 'cancelled' && !byOrder.has(item.id)).map((item) => item.id);
    const voiding = orderItems
      .filter((item) => item.status?.status === 'cancelled' && byOrder.get(item.id)?.status === 'open')
      .map((item) => item.id);
    const waiting = [
      !customer.ok ? text.settingUp : '',
      preparing.length ? text.preparing(preparing) : '',
      voiding.length ? text.voiding(voiding) : '',
    ].filter(Boolean);
    if (!waiting.length) {
      status.textContent = '';
      status.className = '';
      return;
    }
    status.className = 'status';
    status.textContent = waiting.join(' ');
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  if (alive) {
    status.className = 'error';
    status.textContent = details.childElementCount ? text.stillWorking : text.notYet;
  }
}

export function unmount() {
  alive = false;
}

function money(price, lang) {
  if (!price) return '';
  try {
    return new Intl.NumberFormat(lang === 'de' ? 'de-DE' : 'en-GB', { style: 'currency', currency: price.currency }).format(Number(price.amount));
  } catch {
    return `${price.amount} ${price.currency}`;
  }
}

function customerCard(context, text, customer) {
  const { h } = context.ui;
  const person = customer.person || {};
  const bill = customer.addresses?.bill || {};
  const bank = customer.bankaccount || {};
  const name = [person.given_name ?? person.firstname, person.family_name ?? person.lastname].filter(Boolean).join(' ');
  return h('div', { class: 'row' },
    h('section', { class: 'card', 'aria-labelledby': 'billing-to' },
      h('h2', { id: 'billing-to' }, text.billTo),
      h('address', { 'data-testid': 'bill-address' }, name, h('br'), bill.street || '', h('br'), `${bill.zip || ''} ${bill.city || ''}`.trim())),
    h('section', { class: 'card', 'aria-labelledby': 'billing-bank' },
      h('h2', { id: 'billing-bank' }, text.debit),
      h('p', { 'data-testid': 'bank-account' }, bank.owner || '', h('br'), `${text.iban} ${bank.iban || ''}`)));
}

function invoiceList(context, text, items) {
  const { h } = context.ui;
  if (!items.length) return h('p', {}, text.noInvoices);
  const sorted = [...items].sort((a, b) => Number(b.id) - Number(a.id));
  return h('ul', { class: 'list card' }, sorted.map((item) => {
    const invoice = item.invoice;
    const issued = new Date(invoice.issued);
    return h('li', { 'data-invoice': item.id, 'data-order': invoice.order },
      h('span', {}, h('strong', {}, text.invoice(item.id)), ' ', text.forOrder(invoice.order), h('br'),
        h('span', { class: 'muted' }, `${text.issued}: ${Number.isNaN(issued.getTime()) ? invoice.issued : issued.toLocaleString(context.lang)}`)),
      h('span', {}, money(invoice.total, context.lang), ' ',
        h('span', { class: 'badge', 'data-status': invoice.status }, text.status[invoice.status] || invoice.status)));
  }));
}
