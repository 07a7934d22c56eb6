// Finds the weight of each torch module (`down_blocks.1.attentions.0.proj_in`) in a graph exported by
// torch.onnx. Conv, Gemm and Gather weights keep their state-dict names; Linear layers become a MatMul
// on an anonymous `onnx::MatMul_<n>` initializer holding the weight transposed, found only through
// the node's name (`/down_blocks.1/.../attn1/to_q/MatMul`), whose scope path is the module path —
// except that the exporter can leave levels out (the CLIP encoder's nodes read `/text_model/layers.0/…`
// for the module `text_model.encoder.layers.0`). So scopes are mapped to modules from the evidence
// the graph holds: every node that reads a named parameter `<module>.<name>` ties its scope to that
// module, and to the matching parent modules level by level.
import type { ModelProto, NodeProto, TensorProto } from '../onnx/proto.ts';

export interface WeightSlot {
  /** The module's state-dict path. */
  module: string;
  /** The node that applies the weight, and which of its inputs carries it. */
  node: NodeProto;
  input: number;
  initializer: TensorProto;
  /** The initializer holds torch's weight transposed: [in, out] (MatMul; Gemm without transB). */
  transposed: boolean;
  /** Other nodes read the initializer too (the exporter merges identical ones, through Identity nodes):
   * changing it for this module must give the module its own copy. */
  shared: boolean;
}

/** The weight input of the ops that carry a module's weight. */
const WEIGHT_INPUT: Record<string, number> = { Conv: 1, Gemm: 1, MatMul: 1, Gather: 0 };

/** `/a/b.0/c/MatMul_1` → ['a', 'b.0', 'c']; undefined for names that carry no scope. */
function scopeOf(node: NodeProto): string[] | undefined {
  if (!node.name.startsWith('/')) return undefined;
  const parts = node.name.slice(1).split('/');
  parts.pop();
  return parts.length && parts.every((p) => p !== '') ? parts : undefined;
}

/** `down_blocks.1.attentions.0.proj_in.weight` → its module; undefined for exporter-made names. */
function moduleOfParameter(name: string): string | undefined {
  if (name.includes('::') || name.includes('/')) return undefined;
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : undefined;
}

/** Scope paths → module paths, from the graph's named parameters; ambiguous scopes are left out. Both
 * are compared name by name (`layers.0` in a scope is `layers`, `0` in a module path). */
class ScopeMap {
  private readonly known = new Map<string, string | null>();

  /** Records that the nodes of `scope` belong to `module`, and so do their parent scopes as long as the
   * two paths end alike. */
  tie(scope: string[], module: string): void {
    const s = names(scope);
    const m = module.split('.');
    for (let i = s.length, j = m.length; i > 0 && j > 0 && s[i - 1] === m[j - 1]; i--, j--) {
      this.set(s.slice(0, i).join('.'), m.slice(0, j).join('.'));
    }
  }

  private set(scope: string, module: string): void {
    const current = this.known.get(scope);
    if (current === undefined) this.known.set(scope, module);
    else if (current !== module) this.known.set(scope, null);
  }

  /** The module of a scope: through its longest known prefix, else the scope path itself. */
  moduleOf(scope: string[]): string {
    const s = names(scope);
    for (let i = s.length; i > 0; i--) {
      const module = this.known.get(s.slice(0, i).join('.'));
      if (module) return [module, ...s.slice(i)].join('.');
    }
    return s.join('.');
  }
}

function names(scope: string[]): string[] {
  return scope.flatMap((part) => part.split('.'));
}

export class WeightIndex {
  private readonly byModule = new Map<string, WeightSlot | null>();
  /** kohya's names: the module path with every '.' turned into '_'. */
  private readonly byFlatName = new Map<string, string | null>();

  constructor(model: ModelProto) {
    const graph = model.graph;
    const initializers = new Map(graph.initializer.map((t) => [t.name, t]));
    const producers = new Map<string, NodeProto>();
    const uses = new Map<string, number>();
    for (const node of graph.node) {
      for (const out of node.output) producers.set(out, node);
      for (const input of node.input) uses.set(input, (uses.get(input) ?? 0) + 1);
    }
    for (const out of graph.output) uses.set(out.name, (uses.get(out.name) ?? 0) + 1);

    const scopes = new ScopeMap();
    for (const node of graph.node) {
      const scope = scopeOf(node);
      if (!scope) continue;
      for (const input of node.input) {
        const module = initializers.has(input) ? moduleOfParameter(input) : undefined;
        if (module) scopes.tie(scope, module);
      }
    }

    for (const node of graph.node) {
      const index = WEIGHT_INPUT[node.opType];
      if (index === undefined || node.input.length <= index) continue;
      // Follow Identity nodes back to the initializer: each hop means the value is shared.
      let name = node.input[index];
      let viaIdentity = false;
      for (let producer = producers.get(name); producer?.opType === 'Identity'; producer = producers.get(name)) {
        name = producer.input[0];
        viaIdentity = true;
      }
      const initializer = initializers.get(name);
      if (!initializer) continue;
      if ((node.opType === 'MatMul' || node.opType === 'Gemm' || node.opType === 'Gather') && initializer.dims.length !== 2) continue;
      const named = viaIdentity ? undefined : moduleOfParameter(name);
      const scope = scopeOf(node);
      const module = named ?? (scope ? scopes.moduleOf(scope) : undefined);
      if (!module) continue;
      const transB = node.attribute.find((a) => a.name === 'transB')?.i ?? 0n;
      const slot: WeightSlot = {
        module,
        node,
        input: index,
        initializer,
        transposed: node.opType === 'MatMul' || (node.opType === 'Gemm' && transB === 0n),
        shared: viaIdentity || (uses.get(name) ?? 0) > 1,
      };
      this.byModule.set(module, this.byModule.has(module) ? null : slot);
      const flat = module.replaceAll('.', '_');
      const other = this.byFlatName.get(flat);
      this.byFlatName.set(flat, other === undefined || other === module ? module : null);
    }
  }

  /** The weight of a module by its state-dict path; undefined when none or several nodes claim it. */
  get(module: string): WeightSlot | undefined {
    return this.byModule.get(module) ?? undefined;
  }

  /**
   * The weight of a module by kohya's flattened name (`down_blocks_1_attentions_0_proj_in`), or else of
   * the one module whose name ends with it: exports of a model wrapped for its outputs add a level
   * (`te.text_model.encoder…` for kohya's `text_model_encoder…`).
   */
  getFlat(name: string): WeightSlot | undefined {
    const exact = this.byFlatName.get(name);
    if (exact !== undefined) return exact ? this.get(exact) : undefined;
    const wrapped = [...this.byFlatName].filter(([flat]) => flat.endsWith(`_${name}`));
    return wrapped.length === 1 && wrapped[0][1] ? this.get(wrapped[0][1]) : undefined;
  }

  get modules(): string[] {
    return [...this.byModule].filter(([, slot]) => slot).map(([module]) => module);
  }
}
