/* The only libc the freestanding build needs beyond liblc3's wasm/ headers. Our own code. */
float fmaxf(float a, float b) { return a > b ? a : b; }
float fminf(float a, float b) { return a < b ? a : b; }
