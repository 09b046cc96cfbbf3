/**
 * What rule trees (`Condition`) may hold where they are used. Segmentation evaluates every node;
 * lead scoring's fit rules and pipeline guards evaluate fields, behaviour and groups only — a
 * score or conversion node there is refused, never silently read as false.
 */
import type { Condition } from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import { InvalidInputError } from "../../lib/errors/index.ts";

/** Refuses score and conversion nodes anywhere in `cond`, naming the first one's path (`path` is the tree's field). */
export function refuseSegmentOnlyNodes(cond: Condition, path: string, where: string): void {
  const node = cond.node;
  if (node.case === "group") {
    node.value.conditions.forEach((c, i) => {
      refuseSegmentOnlyNodes(c, `${path}.group.conditions[${i}]`, where);
    });
  } else if (node.case === "score" || node.case === "conversion") {
    throw new InvalidInputError(`${path}.${node.case}`, `is evaluated by segmentation only, not in ${where}`);
  }
}
