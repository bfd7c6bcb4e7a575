/*
 * One-row evaluation of the compiled models, in C (service/_native.c binds it to Python).
 *
 * Why C: on /predict the model is one row, and its cost in the server is numpy's fixed cost per
 * call, several times over, with the caches cold between requests (service/README.md,
 * "Where the time went"). The arithmetic itself is a few hundred operations. These functions do
 * exactly what service/inference.py's numpy code does for one row, over the same arrays, so the
 * numpy path stays the reference: tests/inference checks both against scikit-learn.
 *
 * Plain C99 and libm only, no Python headers: the arithmetic stays apart from the binding.
 */
#include <math.h>

/* Multinomial logistic regression: softmax(coef x + intercept); coef is n_classes x n_features. */
void logistic_proba(const double *x, int n_features, const double *coef,
                    const double *intercept, int n_classes, double *out)
{
    double top = -INFINITY;
    for (int k = 0; k < n_classes; k++) {
        double decision = intercept[k];
        for (int j = 0; j < n_features; j++)
            decision += coef[k * n_features + j] * x[j];
        out[k] = decision;
        if (decision > top)
            top = decision;
    }
    double total = 0.0;
    for (int k = 0; k < n_classes; k++) {
        out[k] = exp(out[k] - top);
        total += out[k];
    }
    for (int k = 0; k < n_classes; k++)
        out[k] /= total;
}

/*
 * Random forest: each tree walked from its root. scikit-learn compares the float32 feature with
 * the float64 threshold (x <= t goes left); a leaf is its own left child. leaf_proba holds each
 * node's class probabilities (n_nodes x n_classes); they are summed, then divided by the number
 * of trees, as scikit-learn does. max_depth bounds every walk.
 */
void forest_proba(const double *x, const int *feature, const double *threshold,
                  const int *children, const double *leaf_proba, const int *roots, int n_trees,
                  int max_depth, int n_classes, double *out)
{
    for (int k = 0; k < n_classes; k++)
        out[k] = 0.0;
    for (int t = 0; t < n_trees; t++) {
        int node = roots[t];
        for (int depth = 0; depth < max_depth; depth++) {
            int left = children[2 * node];
            if (left == node)
                break;
            double value = (double)(float)x[feature[node]];
            node = value <= threshold[node] ? left : children[2 * node + 1];
        }
        for (int k = 0; k < n_classes; k++)
            out[k] += leaf_proba[node * n_classes + k];
    }
    for (int k = 0; k < n_classes; k++)
        out[k] /= (double)n_trees;
}

/*
 * RBF SVC with sigmoid calibration (CalibratedClassifierCV, ensemble=False), as
 * SvmModel._decision_ovr and _proba: one-vs-one values from the kernel, SVC's "ovr" transform
 * (votes plus confidences squashed into (-1/3, 1/3)), one sigmoid per class, normalised.
 * support is n_support x n_features; pair_coef is n_support x n_pairs; pairs run (0,1), (0,2),
 * ..., (1,2), ... as in scikit-learn. kernel and ovo are scratch space of n_support and n_pairs.
 */
void svm_proba(const double *x, int n_features, const double *support, int n_support,
               const double *pair_coef, const double *intercept, double gamma,
               const double *calibration_a, const double *calibration_b, int n_classes,
               double *kernel, double *ovo, double *out)
{
    int n_pairs = n_classes * (n_classes - 1) / 2;
    for (int s = 0; s < n_support; s++) {
        double distance = 0.0;
        for (int j = 0; j < n_features; j++) {
            double d = x[j] - support[s * n_features + j];
            distance += d * d;
        }
        kernel[s] = exp(-gamma * distance);
    }
    for (int p = 0; p < n_pairs; p++) {
        double value = intercept[p];
        for (int s = 0; s < n_support; s++)
            value += pair_coef[s * n_pairs + p] * kernel[s];
        ovo[p] = value;
    }
    /* votes in out[], confidences summed separately per class */
    double confidence[n_classes];
    for (int k = 0; k < n_classes; k++) {
        out[k] = 0.0;
        confidence[k] = 0.0;
    }
    int p = 0;
    for (int i = 0; i < n_classes; i++) {
        for (int j = i + 1; j < n_classes; j++, p++) {
            out[ovo[p] < 0 ? j : i] += 1.0;
            confidence[i] += ovo[p];
            confidence[j] -= ovo[p];
        }
    }
    double total = 0.0;
    for (int k = 0; k < n_classes; k++) {
        double decision = out[k] + confidence[k] / (3.0 * fabs(confidence[k]) + 3.0);
        out[k] = 1.0 / (1.0 + exp(calibration_a[k] * decision + calibration_b[k]));
        total += out[k];
    }
    for (int k = 0; k < n_classes; k++)
        out[k] = total == 0.0 ? 1.0 / n_classes : out[k] / total;
}
