{#
    An 8-byte floating point type. dbt.type_float() renders "float", which is 4 bytes in DuckDB
    (REAL) but 8 bytes in Postgres and Snowflake, so amounts would lose precision on DuckDB.
#}
{% macro type_double() %}
    {{ return(adapter.dispatch('type_double', 'creditflow')()) }}
{% endmacro %}

{% macro default__type_double() %}
    {{ return(dbt.type_float()) }}
{% endmacro %}

{% macro duckdb__type_double() %}
    {{ return('double') }}
{% endmacro %}
