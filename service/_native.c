/*
 * service._native: the C one-row path of /predict, as a CPython extension module.
 *
 * Evaluator: one call takes the validated row (a dict), encodes it as service/inference.py's
 * _Preprocessor.transform_row does (median imputation, scaling, one-hot) and evaluates the model
 * with service/evaluate.c, returning the class probabilities as a list of floats.
 * Writer: the prediction's JSON text from those probabilities (service/routes.py's template).
 *
 * Why an extension and not ctypes: for one row the arithmetic is a few hundred operations, and
 * what /predict paid was the glue around it: encoding the row in Python, then ctypes converting a
 * dozen arguments and copying the row in and the result out on every call (service/README.md,
 * "Where the time went"). Here the row goes from the dict straight into a C array.
 *
 * Built against the stable ABI (Py_LIMITED_API, Python 3.11 and later), so one build serves the
 * host's virtualenv and the API image alike whatever their 3.x patch versions; service/native.py
 * builds it with the system's C compiler and the running Python's headers.
 *
 * Anything but the usual validated input (finite floats or None, known category strings or None,
 * a plain dict) is left to Python: `row` returns None and the caller encodes the row in Python,
 * which imputes, converts or raises exactly as it always has, and evaluates it with `values`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "evaluate.c"

/* Sizes the penguin models use are far below these; they bound the stack arrays. */
#define MAX_INPUTS 256
#define MAX_OUTPUTS 64
#define MAX_FEATURES 16

/* The model kinds of service/inference.py (EVALUATOR_KINDS), one evaluator each. */
enum kind { LOGISTIC, FOREST, SVM };

typedef struct {
    PyObject_HEAD
    enum kind kind;
    int n_inputs;
    int n_outputs;
    /* The evaluator's arguments, as service/evaluate.c takes them (array addresses are kept
     * valid by the Python owner, service/native.py's NativeCall, which holds the arrays). */
    int i[4];
    double d[1];
    void *p[8];
    /* Preprocessing: numeric features go to columns 0..n_numeric-1, in order. */
    int n_numeric;
    PyObject *numeric_key[MAX_FEATURES];
    double numeric_fill[MAX_FEATURES], numeric_mean[MAX_FEATURES], numeric_scale[MAX_FEATURES];
    int n_categorical;
    PyObject *categorical_key[MAX_FEATURES];
    PyObject *columns[MAX_FEATURES]; /* category text -> output column (a private copy) */
    int fill_column[MAX_FEATURES];
} Evaluator;

static void evaluate(const Evaluator *e, const double *x, double *out)
{
    switch (e->kind) {
    case LOGISTIC:
        logistic_proba(x, e->i[0], e->p[0], e->p[1], e->i[1], out);
        break;
    case FOREST:
        forest_proba(x, e->p[0], e->p[1], e->p[2], e->p[3], e->p[4], e->i[0], e->i[1], e->i[2],
                     out);
        break;
    case SVM:
        svm_proba(x, e->i[0], e->p[0], e->i[1], e->p[1], e->p[2], e->d[0], e->p[3], e->p[4],
                  e->i[2], e->p[5], e->p[6], out);
        break;
    }
}

static PyObject *as_list(const double *values, int n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (int k = 0; k < n; k++) {
        PyObject *item = PyFloat_FromDouble(values[k]);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SetItem(list, k, item); /* steals the reference */
    }
    return list;
}

static int column_in_range(const Evaluator *e, long column)
{
    return column >= e->n_numeric && column < e->n_inputs;
}

/* Evaluator.row(row: dict) -> list[float] | None (None: encode it in Python instead). */
static PyObject *Evaluator_row(PyObject *self, PyObject *row)
{
    const Evaluator *e = (const Evaluator *)self;
    double x[MAX_INPUTS];
    double out[MAX_OUTPUTS];
    if (!PyDict_CheckExact(row))
        Py_RETURN_NONE;
    for (int j = 0; j < e->n_inputs; j++)
        x[j] = 0.0;
    for (int j = 0; j < e->n_numeric; j++) {
        PyObject *value = PyDict_GetItemWithError(row, e->numeric_key[j]); /* borrowed */
        double measured;
        if (value == NULL) {
            if (PyErr_Occurred())
                return NULL;
            measured = e->numeric_fill[j]; /* absent: row.get() gives None, imputed */
        } else if (value == Py_None) {
            measured = e->numeric_fill[j];
        } else if (PyFloat_CheckExact(value)) {
            measured = PyFloat_AsDouble(value);
            if (isnan(measured))
                measured = e->numeric_fill[j];
            else if (isinf(measured))
                Py_RETURN_NONE; /* Python raises the error that names the field */
        } else {
            Py_RETURN_NONE;
        }
        x[j] = (measured - e->numeric_mean[j]) / e->numeric_scale[j];
    }
    for (int k = 0; k < e->n_categorical; k++) {
        PyObject *value = PyDict_GetItemWithError(row, e->categorical_key[k]);
        if (value == NULL && PyErr_Occurred())
            return NULL;
        if (value == NULL || value == Py_None) {
            x[e->fill_column[k]] = 1.0;
            continue;
        }
        if (!PyUnicode_CheckExact(value))
            Py_RETURN_NONE;
        PyObject *column = PyDict_GetItemWithError(e->columns[k], value);
        if (column == NULL) {
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_NONE; /* unknown category: Python raises the error */
        }
        x[PyLong_AsLong(column)] = 1.0; /* checked in range at construction */
    }
    evaluate(e, x, out);
    return as_list(out, e->n_outputs);
}

/* Evaluator.values(values: list[float]) -> list[float]: an already encoded row. */
static PyObject *Evaluator_values(PyObject *self, PyObject *values)
{
    const Evaluator *e = (const Evaluator *)self;
    double x[MAX_INPUTS];
    double out[MAX_OUTPUTS];
    if (!PyList_Check(values) || PyList_Size(values) != e->n_inputs) {
        PyErr_Format(PyExc_ValueError, "expected a list of %d floats", e->n_inputs);
        return NULL;
    }
    for (int j = 0; j < e->n_inputs; j++) {
        x[j] = PyFloat_AsDouble(PyList_GetItem(values, j));
        if (x[j] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    evaluate(e, x, out);
    return as_list(out, e->n_outputs);
}

static int parse_arguments(Evaluator *e, const char *kind, PyObject *arguments)
{
    /* Addresses come as Python ints ("K": unsigned long long), as numpy's ctypes.data gives. */
    unsigned long long p[8] = {0};
    if (strcmp(kind, "logistic") == 0) {
        e->kind = LOGISTIC;
        if (!PyArg_ParseTuple(arguments, "iKKi", &e->i[0], &p[0], &p[1], &e->i[1]))
            return -1;
    } else if (strcmp(kind, "forest") == 0) {
        e->kind = FOREST;
        if (!PyArg_ParseTuple(arguments, "KKKKKiii", &p[0], &p[1], &p[2], &p[3], &p[4], &e->i[0],
                              &e->i[1], &e->i[2]))
            return -1;
    } else if (strcmp(kind, "rbf_svc") == 0) {
        e->kind = SVM;
        if (!PyArg_ParseTuple(arguments, "iKiKKdKKiKK", &e->i[0], &p[0], &e->i[1], &p[1], &p[2],
                              &e->d[0], &p[3], &p[4], &e->i[2], &p[5], &p[6]))
            return -1;
    } else {
        PyErr_Format(PyExc_ValueError, "unknown evaluator kind %s", kind);
        return -1;
    }
    for (int k = 0; k < 8; k++)
        e->p[k] = (void *)(uintptr_t)p[k];
    return 0;
}

static int parse_numeric(Evaluator *e, PyObject *numeric)
{
    Py_ssize_t n = PyTuple_Size(numeric);
    if (n < 0 || n > MAX_FEATURES || n > e->n_inputs) {
        PyErr_SetString(PyExc_ValueError, "numeric: a tuple of at most n_inputs features");
        return -1;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *key;
        if (!PyArg_ParseTuple(PyTuple_GetItem(numeric, j), "Uddd", &key, &e->numeric_fill[j],
                              &e->numeric_mean[j], &e->numeric_scale[j]))
            return -1;
        Py_INCREF(key);
        e->numeric_key[j] = key;
        e->n_numeric = (int)j + 1;
    }
    return 0;
}

static int parse_categorical(Evaluator *e, PyObject *categorical)
{
    Py_ssize_t n = PyTuple_Size(categorical);
    if (n < 0 || n > MAX_FEATURES) {
        PyErr_SetString(PyExc_ValueError, "categorical: a tuple of at most 16 features");
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *key, *columns;
        if (!PyArg_ParseTuple(PyTuple_GetItem(categorical, k), "UO!i", &key, &PyDict_Type,
                              &columns, &e->fill_column[k]))
            return -1;
        if (!column_in_range(e, e->fill_column[k])) {
            PyErr_SetString(PyExc_ValueError, "categorical fill column out of range");
            return -1;
        }
        /* A private copy: the lookups trust the columns checked here. */
        PyObject *copy = PyDict_Copy(columns);
        if (copy == NULL)
            return -1;
        Py_INCREF(key);
        e->categorical_key[k] = key;
        e->columns[k] = copy;
        e->n_categorical = (int)k + 1;
        Py_ssize_t position = 0;
        PyObject *category, *column;
        while (PyDict_Next(copy, &position, &category, &column)) {
            long index = PyLong_Check(column) ? PyLong_AsLong(column) : -1;
            if (!PyUnicode_CheckExact(category) || !column_in_range(e, index)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError,
                                "categorical columns must map str to an output column");
                return -1;
            }
        }
    }
    return 0;
}

/* Evaluator(kind, n_inputs, n_outputs, arguments, numeric, categorical) */
static int Evaluator_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    Evaluator *e = (Evaluator *)self;
    const char *kind;
    PyObject *arguments, *numeric, *categorical;
    if (kwargs != NULL && PyDict_Size(kwargs) > 0) {
        PyErr_SetString(PyExc_TypeError, "Evaluator takes positional arguments only");
        return -1;
    }
    if (e->n_inputs != 0) {
        PyErr_SetString(PyExc_TypeError, "Evaluator is initialised once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "siiO!O!O!", &kind, &e->n_inputs, &e->n_outputs, &PyTuple_Type,
                          &arguments, &PyTuple_Type, &numeric, &PyTuple_Type, &categorical))
        return -1;
    if (e->n_inputs < 1 || e->n_inputs > MAX_INPUTS || e->n_outputs < 1
        || e->n_outputs > MAX_OUTPUTS) {
        PyErr_Format(PyExc_ValueError, "sizes must be 1..%d inputs and 1..%d outputs", MAX_INPUTS,
                     MAX_OUTPUTS);
        return -1;
    }
    if (parse_arguments(e, kind, arguments) < 0 || parse_numeric(e, numeric) < 0
        || parse_categorical(e, categorical) < 0)
        return -1;
    return 0;
}

/* The end of a dealloc: frees the object; instances of a heap type hold a reference to it. */
static void free_instance(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    freefunc free_slot = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_slot(self);
    Py_DECREF(type);
}

static void Evaluator_dealloc(PyObject *self)
{
    Evaluator *e = (Evaluator *)self;
    for (int j = 0; j < e->n_numeric; j++)
        Py_XDECREF(e->numeric_key[j]);
    for (int k = 0; k < e->n_categorical; k++) {
        Py_XDECREF(e->categorical_key[k]);
        Py_XDECREF(e->columns[k]);
    }
    free_instance(self);
}

static PyMethodDef Evaluator_methods[] = {
    {"row", Evaluator_row, METH_O,
     "row(row: dict) -> list[float] | None: probabilities of a validated row; None when the row "
     "needs Python's encoding (anything unusual)"},
    {"values", Evaluator_values, METH_O,
     "values(values: list[float]) -> list[float]: probabilities of an encoded row"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Evaluator_slots[] = {
    {Py_tp_doc, "One model's C one-row path: encoding and evaluation."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Evaluator_init},
    {Py_tp_dealloc, Evaluator_dealloc},
    {Py_tp_methods, Evaluator_methods},
    {0, NULL},
};

static PyType_Spec Evaluator_spec = {
    "service._native.Evaluator", sizeof(Evaluator), 0, Py_TPFLAGS_DEFAULT, Evaluator_slots,
};

/*
 * Writer(head, species, labels, tail): a prediction's JSON text, from fragments service/routes.py
 * makes from its template at load time. write(proba) gives
 *   head + species[argmax] + labels[0] + repr(proba[0]) + ... + labels[n-1] + repr(proba[n-1]) + tail
 * as bytes, the floats written as Python's repr() writes them (the shortest text that reads back
 * as the same double), which is also what json.dumps writes. The argmax is the first largest, as
 * list.index(max(...)) finds it.
 */
typedef struct {
    PyObject_HEAD
    int n;
    PyObject *head, *tail;
    PyObject *species[MAX_OUTPUTS];
    PyObject *labels[MAX_OUTPUTS];
} Writer;

static int bytes_tuple(PyObject *tuple, PyObject **into, int n, const char *name)
{
    if (PyTuple_Size(tuple) != n) {
        PyErr_Format(PyExc_ValueError, "%s: expected %d items", name, n);
        return -1;
    }
    for (int k = 0; k < n; k++) {
        PyObject *item = PyTuple_GetItem(tuple, k);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s: bytes expected", name);
            return -1;
        }
    }
    for (int k = 0; k < n; k++) {
        into[k] = PyTuple_GetItem(tuple, k);
        Py_INCREF(into[k]);
    }
    return 0;
}

static int Writer_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    Writer *w = (Writer *)self;
    PyObject *head, *species, *labels, *tail;
    if (kwargs != NULL && PyDict_Size(kwargs) > 0) {
        PyErr_SetString(PyExc_TypeError, "Writer takes positional arguments only");
        return -1;
    }
    if (w->head != NULL) {
        PyErr_SetString(PyExc_TypeError, "Writer is initialised once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "SO!O!S", &head, &PyTuple_Type, &species, &PyTuple_Type, &labels,
                          &tail))
        return -1;
    Py_ssize_t n = PyTuple_Size(species);
    if (n < 1 || n > MAX_OUTPUTS) {
        PyErr_Format(PyExc_ValueError, "1 to %d classes", MAX_OUTPUTS);
        return -1;
    }
    if (bytes_tuple(species, w->species, (int)n, "species") < 0)
        return -1;
    w->n = (int)n; /* from here on, dealloc releases the species */
    if (bytes_tuple(labels, w->labels, (int)n, "labels") < 0) {
        w->n = 0;
        for (int k = 0; k < n; k++)
            Py_DECREF(w->species[k]);
        return -1;
    }
    Py_INCREF(head);
    Py_INCREF(tail);
    w->head = head;
    w->tail = tail;
    return 0;
}

/* Writer.write(proba: list[float]) -> bytes */
static PyObject *Writer_write(PyObject *self, PyObject *proba)
{
    const Writer *w = (const Writer *)self;
    char *text[MAX_OUTPUTS];
    Py_ssize_t length[MAX_OUTPUTS];
    PyObject *result = NULL;
    int n = w->n, written = 0, best = 0;
    double top = 0.0;
    if (w->head == NULL) {
        PyErr_SetString(PyExc_TypeError, "Writer is not initialised");
        return NULL;
    }
    if (!PyList_Check(proba) || PyList_Size(proba) != n) {
        PyErr_Format(PyExc_ValueError, "expected a list of %d floats", n);
        return NULL;
    }
    Py_ssize_t total = PyBytes_Size(w->head) + PyBytes_Size(w->tail);
    for (; written < n; written++) {
        double value = PyFloat_AsDouble(PyList_GetItem(proba, written));
        if (value == -1.0 && PyErr_Occurred())
            goto done;
        if (written == 0 || value > top) {
            top = value;
            best = written;
        }
        text[written] = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text[written] == NULL)
            goto done;
        length[written] = (Py_ssize_t)strlen(text[written]);
        total += PyBytes_Size(w->labels[written]) + length[written];
    }
    total += PyBytes_Size(w->species[best]);
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL)
        goto done;
    /* A new bytes object is ours to fill until it is returned. */
    char *out = PyBytes_AsString(result);
#define PUT(bytes)                                                                              \
    do {                                                                                        \
        Py_ssize_t size = PyBytes_Size(bytes);                                                  \
        memcpy(out, PyBytes_AsString(bytes), (size_t)size);                                     \
        out += size;                                                                            \
    } while (0)
    PUT(w->head);
    PUT(w->species[best]);
    for (int k = 0; k < n; k++) {
        PUT(w->labels[k]);
        memcpy(out, text[k], (size_t)length[k]);
        out += length[k];
    }
    PUT(w->tail);
#undef PUT
done:
    for (int k = 0; k < written; k++)
        PyMem_Free(text[k]);
    return result;
}

static void Writer_dealloc(PyObject *self)
{
    Writer *w = (Writer *)self;
    for (int k = 0; k < w->n; k++) {
        Py_XDECREF(w->species[k]);
        Py_XDECREF(w->labels[k]);
    }
    Py_XDECREF(w->head);
    Py_XDECREF(w->tail);
    free_instance(self);
}

static PyMethodDef Writer_methods[] = {
    {"write", Writer_write, METH_O,
     "write(proba: list[float]) -> bytes: the prediction's JSON text"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Writer_slots[] = {
    {Py_tp_doc, "A prediction's JSON text from fragments made at load time."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Writer_init},
    {Py_tp_dealloc, Writer_dealloc},
    {Py_tp_methods, Writer_methods},
    {0, NULL},
};

static PyType_Spec Writer_spec = {
    "service._native.Writer", sizeof(Writer), 0, Py_TPFLAGS_DEFAULT, Writer_slots,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "The C one-row path of /predict (service/native.py).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyType_Spec *specs[] = {&Evaluator_spec, &Writer_spec};
    const char *names[] = {"Evaluator", "Writer"};
    for (int k = 0; k < 2; k++) {
        PyObject *type = PyType_FromSpec(specs[k]);
        if (type == NULL || PyModule_AddObject(m, names[k], type) < 0) {
            Py_XDECREF(type);
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
