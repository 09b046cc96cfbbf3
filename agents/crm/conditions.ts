/**
 * Rule trees (`Condition`) as every part of the CRM agent walks them, and what they may hold where
 * they are used. Segmentation evaluates every node; lead scoring's fit rules and pipeline guards
 * evaluate fields, behaviour and groups only — a score or conversion node there is refused, never
 * silently read as false.
 *
 * Checks and look-ups that only visit nodes share {@link forEachLeaf}, so a field path and the
 * depth limit mean the same everywhere. Evaluating a tree (scoring, guards) and compiling it to SQL
 * (segments/compile.ts) keep their own recursion: what a group does with its children's results is
 * the whole of their work.
 */
import type { Condition } from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import { InvalidInputError } from "../../lib/errors/index.ts";

/** Deepest nesting a rule tree may have (the contract allows 16 levels); the root is at depth 0. */
export const maxConditionDepth = 16;

/**
 * Visits every node of `cond` that is not a group (an empty node too), in order, with its field
 * path: a group's children are at `<path>.group.conditions[i]`. With `maxDepth`, a node at that
 * depth or deeper (the root is at 0) is INVALID_ARGUMENT at its path, before anything after it is
 * visited.
 */
export function forEachLeaf(
  cond: Condition,
  path: string,
  visit: (leaf: Condition, path: string) => void,
  opts: { maxDepth?: number } = {},
): void {
  const walk = (c: Condition, at: string, depth: number): void => {
    if (opts.maxDepth !== undefined && depth >= opts.maxDepth) {
      throw new InvalidInputError(at, `rule trees may nest at most ${opts.maxDepth} levels`);
    }
    const node = c.node;
    if (node.case !== "group") {
      visit(c, at);
      return;
    }
    node.value.conditions.forEach((child, i) => {
      walk(child, `${at}.group.conditions[${i}]`, depth + 1);
    });
  };
  walk(cond, path, 0);
}

/** Refuses `leaf` when it is a score or conversion node, naming it (`path` is the leaf's). */
export function refuseSegmentOnlyNode(leaf: Condition, path: string, where: string): void {
  const kind = leaf.node.case;
  if (kind === "score" || kind === "conversion") {
    throw new InvalidInputError(`${path}.${kind}`, `is evaluated by segmentation only, not in ${where}`);
  }
}

/** Refuses score and conversion nodes anywhere in `cond`, naming the first one's path (`path` is the tree's field). */
export function refuseSegmentOnlyNodes(cond: Condition, path: string, where: string): void {
  forEachLeaf(cond, path, (leaf, at) => {
    refuseSegmentOnlyNode(leaf, at, where);
  });
}
