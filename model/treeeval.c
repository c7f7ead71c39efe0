/* Branch-free evaluator for a flattened forest of binary regression trees.
 *
 * The forest is data, not code: one array of 32-byte nodes, the root of every tree and the
 * depth of every tree. This file never changes with the model, so it is compiled once when the
 * artifact is written and the serving image needs no compiler.
 *
 * Every leaf is stored as a node whose two children are itself, so walking a tree is a fixed
 * number of steps (its depth) with no data-dependent branch: several walks run side by side
 * (eight rows of a batch, or eight trees for one row) and the CPU overlaps their memory loads.
 */
#include <stdint.h>

typedef struct {
    double threshold;  /* go left when x[feature] <= threshold (LightGBM's numerical rule) */
    double value;      /* the leaf's output; 0 on internal nodes */
    int32_t feature;
    int32_t child[2];  /* [left, right]; a leaf points at itself twice */
    int32_t nan_right; /* where NaN goes: 1 = right (LightGBM's missing-value rule, precomputed) */
} Node;
/* model/runtime.py's NODE_DTYPE mirrors this layout, and its check_forest() proves on load that
 * every index below (roots, children, features, nan_right) is in range: nothing here checks. */
_Static_assert(sizeof(Node) == 32, "Node must stay 32 bytes (NODE_DTYPE in model/runtime.py)");

typedef struct {
    const Node *nodes;
    const int32_t *roots;
    const int32_t *depths;
    int32_t n_trees;
    int32_t n_features;
    double base; /* added to every prediction (0 for LightGBM, whose first tree holds the mean) */
} Forest;

#define LANES 8

static inline int32_t step(const Node *nodes, int32_t n, const double *x) {
    const Node *p = &nodes[n];
    double v = x[p->feature];
    int right = (v != v) ? p->nan_right : !(v <= p->threshold);
    return p->child[right];
}

/* One row: walk LANES trees side by side, then add their leaves in tree order. */
double forest_predict_row(const Forest *f, const double *x) {
    double sum = f->base;
    int32_t t = 0;
    for (; t + LANES <= f->n_trees; t += LANES) {
        int32_t nd[LANES], depth = 0;
        for (int j = 0; j < LANES; j++) {
            nd[j] = f->roots[t + j];
            if (f->depths[t + j] > depth) depth = f->depths[t + j];
        }
        for (int32_t d = 0; d < depth; d++)
            for (int j = 0; j < LANES; j++) nd[j] = step(f->nodes, nd[j], x);
        for (int j = 0; j < LANES; j++) sum += f->nodes[nd[j]].value;
    }
    for (; t < f->n_trees; t++) {
        int32_t n = f->roots[t];
        for (int32_t d = 0; d < f->depths[t]; d++) n = step(f->nodes, n, x);
        sum += f->nodes[n].value;
    }
    return sum;
}

/* A batch (row-major, n_rows x n_features): tree by tree, LANES rows side by side, so one
 * tree stays in cache for the whole batch. Sums are added in tree order, as for one row. */
void forest_predict_batch(const Forest *f, const double *X, int64_t n_rows, double *out) {
    const int32_t nf = f->n_features;
    for (int64_t r = 0; r < n_rows; r++) out[r] = f->base;
    for (int32_t t = 0; t < f->n_trees; t++) {
        const int32_t root = f->roots[t], depth = f->depths[t];
        int64_t r = 0;
        for (; r + LANES <= n_rows; r += LANES) {
            int32_t nd[LANES];
            for (int j = 0; j < LANES; j++) nd[j] = root;
            for (int32_t d = 0; d < depth; d++)
                for (int j = 0; j < LANES; j++) nd[j] = step(f->nodes, nd[j], X + (r + j) * nf);
            for (int j = 0; j < LANES; j++) out[r + j] += f->nodes[nd[j]].value;
        }
        for (; r < n_rows; r++) {
            int32_t n = root;
            for (int32_t d = 0; d < depth; d++) n = step(f->nodes, n, X + r * nf);
            out[r] += f->nodes[n].value;
        }
    }
}
