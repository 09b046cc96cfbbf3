/**
 * Disjoint sets over record indexes (union by size, path halving): near-constant time per
 * operation, so grouping millions of matched pairs into clusters stays linear.
 */
export class UnionFind {
  private readonly parent: Int32Array;
  private readonly size: Int32Array;

  /** `n` singleton sets, 0 … n − 1. */
  constructor(n: number) {
    this.parent = new Int32Array(n);
    this.size = new Int32Array(n).fill(1);
    for (let i = 0; i < n; i++) this.parent[i] = i;
  }

  /** The representative of i's set. */
  find(i: number): number {
    let x = i;
    while (this.parent[x] !== x) {
      const grand = this.parent[this.parent[x] as number] as number;
      this.parent[x] = grand;
      x = grand;
    }
    return x;
  }

  /** Joins the sets of a and b; false when they were already one. */
  union(a: number, b: number): boolean {
    let ra = this.find(a);
    let rb = this.find(b);
    if (ra === rb) return false;
    if ((this.size[ra] as number) < (this.size[rb] as number)) [ra, rb] = [rb, ra];
    this.parent[rb] = ra;
    this.size[ra] = (this.size[ra] as number) + (this.size[rb] as number);
    return true;
  }

  /** The sets of two or more members, each sorted, ordered by their smallest member. */
  groups(): number[][] {
    const byRoot = new Map<number, number[]>();
    for (let i = 0; i < this.parent.length; i++) {
      const r = this.find(i);
      if ((this.size[r] as number) < 2) continue;
      let g = byRoot.get(r);
      if (g === undefined) {
        g = [];
        byRoot.set(r, g);
      }
      g.push(i);
    }
    return [...byRoot.values()].sort((a, b) => (a[0] as number) - (b[0] as number));
  }
}
