{#
    Cast text to an integer, giving null instead of an error when the text is not one.
    dbt.safe_cast is a plain cast on PostgreSQL (no try_cast there), so a month label such as
    'history' would fail the query. Only unsigned digit strings are cast on PostgreSQL.
#}
{% macro safe_cast_integer(text) %}
    {{ return(adapter.dispatch('safe_cast_integer', 'creditflow')(text)) }}
{% endmacro %}

{% macro default__safe_cast_integer(text) %}
    {{ return(dbt.safe_cast(text, dbt.type_int())) }}
{% endmacro %}

{% macro postgres__safe_cast_integer(text) %}
    case
        when {{ text }} ~ '^[0-9]{1,9}$' then cast({{ text }} as {{ dbt.type_int() }})
    end
{% endmacro %}
