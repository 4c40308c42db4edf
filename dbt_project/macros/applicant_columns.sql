{#
    The applicant columns of the application file (every column but sk_id_curr and target), in
    file order, with the kind the ingest gate reads them as: int, float or str. The list matches
    flows/schema.py; tests/test_dbt.py checks that the two agree.
#}
{% macro applicant_columns() %}
    {{ return({
        "name_contract_type": "str",
        "code_gender": "str",
        "flag_own_car": "str",
        "flag_own_realty": "str",
        "cnt_children": "int",
        "amt_income_total": "float",
        "amt_credit": "float",
        "amt_annuity": "float",
        "amt_goods_price": "float",
        "name_type_suite": "str",
        "name_income_type": "str",
        "name_education_type": "str",
        "name_family_status": "str",
        "name_housing_type": "str",
        "region_population_relative": "float",
        "days_birth": "int",
        "days_employed": "int",
        "days_registration": "float",
        "days_id_publish": "int",
        "own_car_age": "float",
        "flag_mobil": "int",
        "flag_emp_phone": "int",
        "flag_work_phone": "int",
        "flag_cont_mobile": "int",
        "flag_phone": "int",
        "flag_email": "int",
        "occupation_type": "str",
        "cnt_fam_members": "float",
        "region_rating_client": "int",
        "region_rating_client_w_city": "int",
        "weekday_appr_process_start": "str",
        "hour_appr_process_start": "int",
        "reg_region_not_live_region": "int",
        "reg_region_not_work_region": "int",
        "live_region_not_work_region": "int",
        "reg_city_not_live_city": "int",
        "reg_city_not_work_city": "int",
        "live_city_not_work_city": "int",
        "organization_type": "str",
        "ext_source_1": "float",
        "ext_source_2": "float",
        "ext_source_3": "float",
        "apartments_avg": "float",
        "basementarea_avg": "float",
        "years_beginexpluatation_avg": "float",
        "years_build_avg": "float",
        "commonarea_avg": "float",
        "elevators_avg": "float",
        "entrances_avg": "float",
        "floorsmax_avg": "float",
        "floorsmin_avg": "float",
        "landarea_avg": "float",
        "livingapartments_avg": "float",
        "livingarea_avg": "float",
        "nonlivingapartments_avg": "float",
        "nonlivingarea_avg": "float",
        "apartments_mode": "float",
        "basementarea_mode": "float",
        "years_beginexpluatation_mode": "float",
        "years_build_mode": "float",
        "commonarea_mode": "float",
        "elevators_mode": "float",
        "entrances_mode": "float",
        "floorsmax_mode": "float",
        "floorsmin_mode": "float",
        "landarea_mode": "float",
        "livingapartments_mode": "float",
        "livingarea_mode": "float",
        "nonlivingapartments_mode": "float",
        "nonlivingarea_mode": "float",
        "apartments_medi": "float",
        "basementarea_medi": "float",
        "years_beginexpluatation_medi": "float",
        "years_build_medi": "float",
        "commonarea_medi": "float",
        "elevators_medi": "float",
        "entrances_medi": "float",
        "floorsmax_medi": "float",
        "floorsmin_medi": "float",
        "landarea_medi": "float",
        "livingapartments_medi": "float",
        "livingarea_medi": "float",
        "nonlivingapartments_medi": "float",
        "nonlivingarea_medi": "float",
        "fondkapremont_mode": "str",
        "housetype_mode": "str",
        "totalarea_mode": "float",
        "wallsmaterial_mode": "str",
        "emergencystate_mode": "str",
        "obs_30_cnt_social_circle": "float",
        "def_30_cnt_social_circle": "float",
        "obs_60_cnt_social_circle": "float",
        "def_60_cnt_social_circle": "float",
        "days_last_phone_change": "float",
        "flag_document_2": "int",
        "flag_document_3": "int",
        "flag_document_4": "int",
        "flag_document_5": "int",
        "flag_document_6": "int",
        "flag_document_7": "int",
        "flag_document_8": "int",
        "flag_document_9": "int",
        "flag_document_10": "int",
        "flag_document_11": "int",
        "flag_document_12": "int",
        "flag_document_13": "int",
        "flag_document_14": "int",
        "flag_document_15": "int",
        "flag_document_16": "int",
        "flag_document_17": "int",
        "flag_document_18": "int",
        "flag_document_19": "int",
        "flag_document_20": "int",
        "flag_document_21": "int",
        "amt_req_credit_bureau_hour": "float",
        "amt_req_credit_bureau_day": "float",
        "amt_req_credit_bureau_week": "float",
        "amt_req_credit_bureau_mon": "float",
        "amt_req_credit_bureau_qrt": "float",
        "amt_req_credit_bureau_year": "float",
    }) }}
{% endmacro %}

{# The warehouse type of a column kind of applicant_columns(). #}
{% macro applicant_column_type(kind) %}
    {% if kind == 'int' %}
        {{ return(dbt.type_bigint()) }}
    {% elif kind == 'float' %}
        {{ return(type_double()) }}
    {% else %}
        {{ return(dbt.type_string()) }}
    {% endif %}
{% endmacro %}

{#
    The type of a column kind of applicant_columns() in the application_features contract:
    integers narrow to integer (every count, flag and day number fits 32 bits).
#}
{% macro feature_type(kind) %}
    {% if kind == 'int' %}
        {{ return(dbt.type_int()) }}
    {% elif kind == 'float' %}
        {{ return(type_double()) }}
    {% else %}
        {{ return(dbt.type_string()) }}
    {% endif %}
{% endmacro %}
