// A small DOM builder the shell hands to plugins (context.ui), so no plugin needs innerHTML:
// text is always set as text, never parsed as markup.

let nextId = 0;

/**
 * `h('button', { type: 'button', onclick: fn, class: 'secondary' }, 'Save')`: an element with
 * attributes (`on…` functions become listeners; `false`/`null` leave an attribute out) and
 * children (strings become text; arrays are flattened; `null`, `false` and `''` are skipped).
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'value' && 'value' in element) {
      element.value = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (Array.isArray(child)) append(element, child);
    else if (child === null || child === undefined || child === false || child === '') continue;
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * A labelled input: `field('Street', { name: 'street', required: true })` → a `.field` div with
 * a `<label for>` and the input (or `{ tag: 'select', options: [[value, text], …] }`).
 */
export function field(label, attributes = {}) {
  const id = `f${++nextId}`;
  const { tag = 'input', options, hint, ...rest } = attributes;
  const control = h(tag, { id, ...rest, 'aria-describedby': hint ? `${id}-hint` : null });
  if (tag === 'select' && Array.isArray(options)) {
    for (const [value, text] of options) {
      const option = h('option', { value }, text);
      if (String(rest.value ?? '') === String(value)) option.selected = true;
      control.append(option);
    }
  }
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('small', { id: `${id}-hint`, class: 'muted' }, hint) : null,
  );
}
