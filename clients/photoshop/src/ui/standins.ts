// Stand-ins for UXP's built-in Spectrum widgets in a browser (the end-to-end tests), so that the same
// UI code runs in both. Each has what UXP documents for its widget (AdobeDocs/uxp-photoshop,
// reference-spectrum/spectrum-uxp-widgets), and relies on nothing more:
// - sp-textfield, sp-textarea: `value`; `input` and `change` events; `type` number/password/search.
// - sp-picker (sp-dropdown's successor): an `sp-menu slot="options"` of `sp-menu-item`s (`selected`,
//   `disabled`); `change` with `selectedIndex` on the target.
// - sp-slider: `min`, `max`, `value`, `value-label`, `show-value`, `disabled`; `value`; `input`, `change`.
// - sp-checkbox: `checked`, `disabled`; `checked`; `input`, `change`.
// - sp-progressbar: `max`, `value`; sp-button: `variant`, `disabled` (no click when disabled).
// A native control sits in each one's open shadow root, so that events reach listeners with the
// widget as their target, as in UXP; `change` is not composed, so it is sent again from the widget.

abstract class Widget<C extends HTMLElement> extends HTMLElement {
  protected readonly control: C;
  constructor(control: C, ...extra: Node[]) {
    super();
    this.control = control;
    const shadow = this.attachShadow({ mode: 'open' });
    const style = document.createElement('style');
    style.textContent = ':host{display:inline-flex;align-items:center;gap:4px}input,textarea,select{flex:1 1 auto;min-width:0;font:inherit}';
    shadow.append(style, control, ...extra);
    control.addEventListener('change', (event) => {
      event.stopPropagation();
      this.dispatchEvent(new Event('change', { bubbles: true }));
    });
  }
  static observedAttributes = ['disabled', 'placeholder', 'type', 'value', 'min', 'max', 'checked'];
  attributeChangedCallback(name: string, _old: string | null, value: string | null) {
    const control = this.control as unknown as Record<string, unknown>;
    if (name === 'disabled') control.disabled = value !== null;
    else if (name === 'placeholder' && 'placeholder' in control) control.placeholder = value ?? '';
    else this.attribute(name, value);
  }
  protected attribute(_name: string, _value: string | null): void {}
}

/** A text widget's `value` is its control's. */
abstract class TextWidget<C extends HTMLInputElement | HTMLTextAreaElement> extends Widget<C> {
  get value() {
    return this.control.value;
  }
  set value(value: string) {
    this.control.value = String(value);
  }
}

class SpTextfield extends TextWidget<HTMLInputElement> {
  constructor() {
    super(document.createElement('input'));
    this.control.type = 'text';
  }
  protected override attribute(name: string, value: string | null) {
    if (name === 'type') this.control.type = value === 'number' || value === 'password' || value === 'search' ? value : 'text';
    else if (name === 'value') this.control.value = value ?? '';
  }
}

class SpTextarea extends TextWidget<HTMLTextAreaElement> {
  constructor() {
    super(document.createElement('textarea'));
    this.control.rows = 3;
    this.shadowRoot!.querySelector('style')!.textContent += ':host{display:flex}';
  }
}

class SpSlider extends Widget<HTMLInputElement> {
  private readonly shown: HTMLSpanElement;
  constructor() {
    const range = document.createElement('input');
    range.type = 'range';
    const shown = document.createElement('span');
    super(range, shown);
    this.shown = shown;
    // The label (an `sp-label slot="label"`) before the track.
    const label = document.createElement('slot');
    label.name = 'label';
    this.shadowRoot!.insertBefore(label, range);
    range.addEventListener('input', () => this.show());
  }
  protected override attribute(name: string, value: string | null) {
    if (name === 'min' || name === 'max' || name === 'value') this.control[name] = value ?? '';
    this.show();
  }
  private show() {
    this.shown.textContent = this.getAttribute('show-value') === 'false' ? '' : `${this.control.value}${this.getAttribute('value-label') ?? ''}`;
  }
  get value(): number {
    return Number(this.control.value);
  }
  set value(value: number) {
    this.control.value = String(value);
    this.show();
  }
}

class SpCheckbox extends Widget<HTMLInputElement> {
  constructor() {
    const box = document.createElement('input');
    box.type = 'checkbox';
    super(box, document.createElement('slot'));
  }
  protected override attribute(name: string, value: string | null) {
    if (name === 'checked') this.control.checked = value !== null;
  }
  get checked() {
    return this.control.checked;
  }
  set checked(value: boolean) {
    this.control.checked = value;
  }
}

/** The picker shows its menu's items in a native select, rebuilt whenever the items change. */
class SpPicker extends Widget<HTMLSelectElement> {
  private readonly observer = new MutationObserver(() => this.render());
  constructor() {
    super(document.createElement('select'));
    this.control.addEventListener('change', () => {
      // As in UXP, the picked item becomes the menu's selected one.
      this.items().forEach((item, i) => item.toggleAttribute('selected', i === this.selectedIndex));
    });
  }
  connectedCallback() {
    this.observer.observe(this, { childList: true, subtree: true, attributes: true, attributeFilter: ['selected', 'disabled'], characterData: true });
    this.render();
  }
  disconnectedCallback() {
    this.observer.disconnect();
  }
  private items(): Element[] {
    return Array.from(this.querySelectorAll('sp-menu[slot="options"] > sp-menu-item'));
  }
  /** An option that shows the `placeholder` while no item is selected, before the items. */
  private get offset(): number {
    return this.hasAttribute('placeholder') ? 1 : 0;
  }
  private render() {
    const items = this.items();
    const options = items.map((item) => {
      const option = document.createElement('option');
      option.textContent = item.textContent;
      option.disabled = item.hasAttribute('disabled');
      return option;
    });
    if (this.offset) {
      const placeholder = document.createElement('option');
      placeholder.textContent = this.getAttribute('placeholder');
      placeholder.disabled = true;
      options.unshift(placeholder);
    }
    this.control.replaceChildren(...options);
    this.control.selectedIndex = items.findIndex((item) => item.hasAttribute('selected')) + this.offset;
  }
  get selectedIndex(): number {
    return this.control.selectedIndex - this.offset;
  }
  set selectedIndex(index: number) {
    this.items().forEach((item, i) => item.toggleAttribute('selected', i === index));
  }
}

class SpButton extends HTMLElement {
  connectedCallback() {
    this.setAttribute('role', 'button');
    this.style.cssText += ';display:inline-block;padding:3px 10px;border:1px solid #888;border-radius:12px;cursor:pointer;user-select:none';
    this.addEventListener('click', (event) => {
      if (this.hasAttribute('disabled')) event.stopImmediatePropagation();
    }, { capture: true });
  }
}

class SpProgressbar extends HTMLElement {
  static observedAttributes = ['value', 'max'];
  private bar = document.createElement('progress');
  connectedCallback() {
    if (!this.bar.isConnected) this.append(this.bar);
    this.bar.style.width = '100%';
    this.attributeChangedCallback();
  }
  attributeChangedCallback() {
    this.bar.max = Number(this.getAttribute('max') ?? 100);
    this.bar.value = Number(this.getAttribute('value') ?? 0);
  }
}

/** Defines the stand-ins that the page does not have. */
export function defineStandIns(): void {
  for (const [name, element] of [
    ['sp-textfield', SpTextfield],
    ['sp-textarea', SpTextarea],
    ['sp-slider', SpSlider],
    ['sp-checkbox', SpCheckbox],
    ['sp-picker', SpPicker],
    ['sp-button', SpButton],
    ['sp-progressbar', SpProgressbar],
  ] as const) {
    if (!customElements.get(name)) customElements.define(name, element);
  }
}
