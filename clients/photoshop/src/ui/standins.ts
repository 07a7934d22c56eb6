// Stand-ins for UXP's built-in Spectrum widgets in a browser (the end-to-end tests), so that the same
// UI code runs in both: each wraps the native control, with the property and events UXP's has.

class SpTextfield extends HTMLElement {
  private input!: HTMLInputElement | HTMLTextAreaElement;
  connectedCallback() {
    if (this.input) return;
    this.input = document.createElement(this.hasAttribute('multiline') ? 'textarea' : 'input');
    if (this.input instanceof HTMLInputElement) this.input.type = this.getAttribute('type') === 'number' ? 'number' : this.getAttribute('type') === 'password' ? 'password' : 'text';
    this.input.placeholder = this.getAttribute('placeholder') ?? '';
    this.input.value = this.pending ?? this.getAttribute('value') ?? '';
    this.input.style.width = '100%';
    this.append(this.input);
  }
  private pending: string | null = null;
  get value() {
    return this.input ? this.input.value : (this.pending ?? '');
  }
  set value(value: string) {
    if (this.input) this.input.value = value;
    else this.pending = value;
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

class SpCheckbox extends HTMLElement {
  private box!: HTMLInputElement;
  connectedCallback() {
    if (this.box) return;
    this.box = document.createElement('input');
    this.box.type = 'checkbox';
    this.box.checked = this.hasAttribute('checked');
    const label = document.createElement('span');
    label.append(...Array.from(this.childNodes));
    this.append(this.box, label);
  }
  get checked() {
    return this.box ? this.box.checked : this.hasAttribute('checked');
  }
  set checked(value: boolean) {
    if (this.box) this.box.checked = value;
    else this.toggleAttribute('checked', value);
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
    ['sp-button', SpButton],
    ['sp-checkbox', SpCheckbox],
    ['sp-progressbar', SpProgressbar],
  ] as const) {
    if (!customElements.get(name)) customElements.define(name, element);
  }
}
