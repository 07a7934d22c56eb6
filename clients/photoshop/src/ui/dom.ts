// A few lines of plain DOM instead of a view library: the panel is one screen of controls.

type Props = Record<string, unknown> & { class?: string; on?: Record<string, (event: Event) => void> };

/** An element with properties (or attributes, for names with a dash), listeners and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props?: Props, ...children: (Node | string | null | undefined)[]): HTMLElementTagNameMap[K];
export function h(tag: string, props?: Props, ...children: (Node | string | null | undefined)[]): HTMLElement;
export function h(tag: string, props: Props = {}, ...children: (Node | string | null | undefined)[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'on') for (const [event, listener] of Object.entries(value as Record<string, EventListener>)) element.addEventListener(event, listener);
    else if (key === 'class') element.className = String(value);
    else if (key.includes('-') || tag.startsWith('sp-')) {
      // Spectrum widgets read attributes; a false one is left out.
      if (value !== false && value !== undefined && value !== null) element.setAttribute(key, value === true ? '' : String(value));
    } else (element as unknown as Record<string, unknown>)[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) element.append(child);
  return element;
}

/** Replaces an element's children. */
export function fill(parent: Element, ...children: (Node | string | null | undefined)[]): void {
  parent.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined));
}

/** The value of a Spectrum text field or a native input, which UXP's sp-textfield exposes as `value`. */
export function valueOf(element: Element): string {
  return String((element as HTMLInputElement).value ?? '');
}

export function setValue(element: Element, value: string | number): void {
  (element as HTMLInputElement).value = String(value);
}

export interface PickerItem {
  value: string;
  label: string;
  disabled?: boolean;
  title?: string;
}

/**
 * A Spectrum picker: `sp-picker` with an `sp-menu slot="options"` of `sp-menu-item`s. UXP documents
 * `selectedIndex` (on `change`) and the items' `selected`, not a `value`: the values live on the items.
 */
export function picker(props: Record<string, unknown>, items: PickerItem[] = []): HTMLElement {
  const element = h('sp-picker', props, h('sp-menu', { slot: 'options' }));
  setItems(element, items);
  return element;
}

const menuItems = (element: Element) => Array.from(element.querySelectorAll('sp-menu > sp-menu-item'));

export function setItems(element: Element, items: PickerItem[]): void {
  const menu = element.querySelector('sp-menu')!;
  fill(menu, ...items.map((item) => h('sp-menu-item', { value: item.value, disabled: !!item.disabled, title: item.title }, item.label)));
}

/** The value of the picked item ('' when none is). */
export function picked(element: Element): string {
  const index = (element as unknown as { selectedIndex: number }).selectedIndex;
  return menuItems(element)[index]?.getAttribute('value') ?? '';
}

/** Picks the item of `value` (none when no item has it). */
export function pick(element: Element, value: string): void {
  const items = menuItems(element);
  items.forEach((item) => item.toggleAttribute('selected', item.getAttribute('value') === value));
  (element as unknown as { selectedIndex: number }).selectedIndex = items.findIndex((item) => item.getAttribute('value') === value);
}
