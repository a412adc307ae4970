# embed.cmake - turns a file into a C array (cmake -P, at build time):
#   cmake -DIN=<file> -DOUT=<file.c> -DNAME=<symbol> -P embed.cmake
# defines `const unsigned char NAME[]` (NUL-terminated) and `const size_t NAME_len`.
file(READ "${IN}" _hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" _bytes "${_bytes}")
get_filename_component(_name "${IN}" NAME)
file(WRITE "${OUT}" "/* Generated from ${_name} by cmake/embed.cmake: do not edit. */\n#include <stddef.h>\n"
     "const unsigned char ${NAME}[] = {\n${_bytes}0x00};\nconst size_t ${NAME}_len = sizeof ${NAME} - 1;\n")
