# sl_embed(TARGET <target> NAME <c-symbol> FILE <path> [DEPENDS <target>])
# Generates a C source defining `const unsigned char NAME[]` (NUL-terminated) and
# `const size_t NAME_size` with the bytes of FILE, and adds it to TARGET. Kernel sources and SPIR-V
# are embedded this way, so the library reads no kernel files at run time.
set(SL_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/embed_file.cmake)

function(sl_embed)
  cmake_parse_arguments(E "" "TARGET;NAME;FILE" "DEPENDS" ${ARGN})
  set(out ${PROJECT_BINARY_DIR}/generated/embed_${E_NAME}.c)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DIN=${E_FILE} -DOUT=${out} -DNAME=${E_NAME} -P ${SL_EMBED_SCRIPT}
    DEPENDS ${E_FILE} ${SL_EMBED_SCRIPT} ${E_DEPENDS}
    COMMENT "Embedding ${E_NAME}"
    VERBATIM)
  target_sources(${E_TARGET} PRIVATE ${out})
endfunction()
