/* The only libc the freestanding build needs beyond liblc3's wasm/ headers. Our own code.
 * C99 semantics: a NaN operand is ignored (the other one is returned). */
float fmaxf(float a, float b) { return (a > b || b != b) ? a : b; }
float fminf(float a, float b) { return (a < b || b != b) ? a : b; }
